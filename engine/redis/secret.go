package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/redis/rueidis"

	"github.com/stardust-go/stardust/server"
)

var _ server.SecretSharer = (*Engine)(nil)

// SharedSecret implements server.SecretSharer: the key every process on
// this Redis mints BAYEUX_BROWSER cookies with, kept under {prefix}secret.
// The first process to ask draws it (SET NX), and all read the winner's.
// When Redis loses it (a flush, a restart without persistence), the next
// one to ask draws a new one; processes read it again when a cookie does
// not verify, so that they agree again.
func (e *Engine) SharedSecret(ctx context.Context) ([]byte, error) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	ctx, cancel := e.call(ctx)
	defer cancel()
	key := e.p + "secret"
	res := e.client.DoMulti(ctx,
		e.client.B().Set().Key(key).Value(hex.EncodeToString(b[:])).Nx().Build(),
		e.client.B().Get().Key(key).Build())
	if err := res[0].Error(); err != nil && !rueidis.IsRedisNil(err) {
		return nil, fail(err)
	}
	v, err := res[1].ToString()
	if err != nil {
		return nil, fail(err)
	}
	k, err := hex.DecodeString(v)
	if err != nil || len(k) < 32 {
		return nil, fmt.Errorf("%w: redis: %s holds no key of 32 bytes", server.ErrEngine, key)
	}
	return k, nil
}
