<?php
// pbxlink FreePBX module: the one helper install.php and uninstall.php share. pbxlink's
// configuration lives in FreePBX's *_custom.conf files between these markers, so the rest of
// those files (the integrator's own lines) is never touched.

if (!function_exists('pbxlink_conf_without_block')) {
    function pbxlink_conf_without_block($text)
    {
        $begin = strpos($text, '; BEGIN pbxlink');
        $end = strpos($text, '; END pbxlink');
        if ($begin === false || $end === false || $end < $begin) {
            return $text;
        }
        $after = strpos($text, "\n", $end);
        return substr($text, 0, $begin) . ($after === false ? '' : substr($text, $after + 1));
    }
}
