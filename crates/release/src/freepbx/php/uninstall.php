<?php
// pbxlink FreePBX module uninstall: takes pbxlink's blocks out of the *_custom.conf files,
// leaving everything else in them as it was.
if (!defined('FREEPBX_IS_AUTH')) {
    die('No direct script access allowed');
}
require_once __DIR__ . '/functions.inc.php';

$etc = \FreePBX::Config()->get('ASTETCDIR');
foreach (array('extensions_custom.conf', 'manager_custom.conf') as $name) {
    $path = $etc . '/' . $name;
    if (file_exists($path)) {
        file_put_contents($path, pbxlink_conf_without_block(file_get_contents($path)));
    }
}
needreload();
