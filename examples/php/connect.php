<?php
// connect.php answers Stardust's auth.connect_url from the PHP session:
// Stardust forwards the browser's Cookie header (auth.forward_headers), so
// session_start() finds the user who logged in with login.php.
session_start(["read_and_close" => true]);
header("Content-Type: application/json");
if (!isset($_SESSION["user"])) {
    http_response_code(401);
    echo json_encode(["error" => "log in first"]);
    exit;
}
echo json_encode(["user" => $_SESSION["user"], "expire_at" => time() + 300]);
