<?php
// login.php?user=42 stands for the site's own login: it keeps the user in
// the PHP session, sets the token cookie Stardust reads (HttpOnly: scripts
// never see it; a plain EventSource sends it), and goes to the page.
require __DIR__ . "/jwt.php";
session_start();
$user = preg_replace("/[^A-Za-z0-9_]/", "", $_GET["user"] ?? "");
if ($user === "") {
    http_response_code(400);
    exit("user=ID please\n");
}
session_regenerate_id(true);
$_SESSION["user"] = $user;
setcookie("stardust_token", stardust_token($user), ["path" => "/", "httponly" => true, "samesite" => "Lax"]);
header("Location: /app.html");
