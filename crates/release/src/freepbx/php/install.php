<?php
// pbxlink FreePBX module install: writes pbxlink's dialplan hooks and AMI user into
// extensions_custom.conf and manager_custom.conf (FreePBX never rewrites those files).
// The AMI secret is made here, on the PBX, so the published tarball carries none; pbxlink's
// config needs the value in ASTETCDIR/pbxlink_ami_secret.
if (!defined('FREEPBX_IS_AUTH')) {
    die('No direct script access allowed');
}
require_once __DIR__ . '/functions.inc.php';

$etc = \FreePBX::Config()->get('ASTETCDIR');
$secretFile = $etc . '/pbxlink_ami_secret';
if (!file_exists($secretFile)) {
    file_put_contents($secretFile, bin2hex(random_bytes(16)) . "\n");
    chmod($secretFile, 0600);
}
$secret = trim(file_get_contents($secretFile));
foreach (array('extensions_custom.conf', 'manager_custom.conf') as $name) {
    $block = str_replace('@PBXLINK_AMI_SECRET@', $secret, file_get_contents(__DIR__ . '/conf/' . $name));
    $path = $etc . '/' . $name;
    $text = file_exists($path) ? pbxlink_conf_without_block(file_get_contents($path)) : '';
    file_put_contents($path, ($text === '' ? '' : rtrim($text) . "\n\n") . $block);
}
needreload();
