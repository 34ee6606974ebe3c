<?php
// token.php gives the logged-in user a fresh token (stardust.js's token
// option calls it again when the last one expired); 401 for a visitor.
require __DIR__ . "/jwt.php";
session_start();
if (!isset($_SESSION["user"])) {
    http_response_code(401);
    exit;
}
header("Content-Type: text/plain");
header("Cache-Control: no-store");
echo stardust_token($_SESSION["user"]);
