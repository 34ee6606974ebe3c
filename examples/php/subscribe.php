<?php
// subscribe.php answers Stardust's auth.subscribe_url: a user may read its
// own inbox and nothing else. Stardust asks once per session and channel
// (auth.cache_ttl), not on every poll.
session_start(["read_and_close" => true]);
$q = json_decode(file_get_contents("php://input"), true) ?? [];
header("Content-Type: application/json");
$user = $_SESSION["user"] ?? null;
if ($user === null || ($q["user"] ?? "") !== $user || ($q["channel"] ?? "") !== "/stardust/inbox_" . $user) {
    http_response_code(403);
    echo json_encode(["error" => "not your inbox"]);
    exit;
}
echo "{}";
