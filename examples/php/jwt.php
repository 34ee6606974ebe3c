<?php
// stardust_token signs an HS256 token (a JWT) for Stardust's [auth]
// token_hmac_secret: "sub" is the user id, "exp" when it stops holding.
// The secret comes from the environment (php-fpm: env[STARDUST_SECRET]).
function stardust_b64(string $s): string {
    return rtrim(strtr(base64_encode($s), "+/", "-_"), "=");
}

function stardust_token(string $user, int $ttl = 300): string {
    $secret = getenv("STARDUST_SECRET");
    if ($secret === false || strlen($secret) < 32) {
        http_response_code(500);
        exit("STARDUST_SECRET is not set (32 bytes or more)\n");
    }
    $head = stardust_b64(json_encode(["alg" => "HS256", "typ" => "JWT"]));
    $claims = stardust_b64(json_encode(["sub" => $user, "exp" => time() + $ttl]));
    $sig = stardust_b64(hash_hmac("sha256", "$head.$claims", $secret, true));
    return "$head.$claims.$sig";
}
