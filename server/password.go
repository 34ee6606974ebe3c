package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Password hashes, as [bayeux.auth] users and [comet] auth_pass keep them:
//
//   - bcrypt: "$2a$…", "$2b$…" or "$2y$…" (htpasswd -nbB, HashPassword);
//   - argon2id: "$argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>" (base64 without
//     padding, as the reference implementation and libsodium write it);
//   - "sha256:" and 64 hex digits: unsalted, still read for old
//     configurations; stardust --check warns about it.

// ErrBadHash says a password hash is in none of the forms above.
var ErrBadHash = errors.New("want a bcrypt hash ($2b$…), an argon2id hash ($argon2id$…) or sha256:<64 hex digits>")

// HashPassword returns the bcrypt hash (cost 10) of password, for the
// configuration file (stardust --hash-password prints it).
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	return string(h), err
}

// CheckHash reports whether hash is in a form CheckPassword reads, and
// whether that form is the weak unsalted sha256.
func CheckHash(hash string) (weak bool, err error) {
	switch {
	case strings.HasPrefix(hash, "sha256:"):
		if _, err := hex.DecodeString(hash[7:]); err != nil || len(hash) != 7+64 {
			return true, ErrBadHash
		}
		return true, nil
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return false, fmt.Errorf("%w: %v", ErrBadHash, err)
		}
		return false, nil
	case strings.HasPrefix(hash, "$argon2id$"):
		if _, err := parseArgon2id(hash); err != nil {
			return false, err
		}
		return false, nil
	}
	return false, ErrBadHash
}

type argon2idHash struct {
	time, memory uint32
	threads      uint8
	salt, key    []byte
}

func parseArgon2id(hash string) (argon2idHash, error) {
	var a argon2idHash
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != "v=19" {
		return a, fmt.Errorf("%w: argon2id hash not in the form $argon2id$v=19$m=…,t=…,p=…$salt$hash", ErrBadHash)
	}
	var threads uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &a.memory, &a.time, &threads); err != nil ||
		a.time == 0 || a.memory == 0 || threads == 0 || threads > 255 || a.memory > 1<<22 || a.time > 100 {
		return a, fmt.Errorf("%w: argon2id parameters %q", ErrBadHash, parts[3])
	}
	a.threads = uint8(threads)
	var err error
	if a.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(a.salt) < 8 {
		return a, fmt.Errorf("%w: argon2id salt", ErrBadHash)
	}
	if a.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(a.key) < 16 || len(a.key) > 64 {
		return a, fmt.Errorf("%w: argon2id hash", ErrBadHash)
	}
	return a, nil
}

// hashSlots bounds the password checks running at once: bcrypt and argon2id
// are slow on purpose, and a flood of handshakes with wrong passwords must
// not take every core.
var hashSlots = make(chan struct{}, max(1, runtime.NumCPU()/2))

// CheckPassword reports whether password matches hash (any form above). It
// takes time on purpose; at most half the cores run checks at once.
func CheckPassword(hash, password string) bool {
	hashSlots <- struct{}{}
	defer func() { <-hashSlots }()
	switch {
	case strings.HasPrefix(hash, "sha256:"):
		sum := sha256.Sum256([]byte(password))
		return subtle.ConstantTimeCompare([]byte("sha256:"+hex.EncodeToString(sum[:])), []byte(hash)) == 1
	case strings.HasPrefix(hash, "$argon2id$"):
		a, err := parseArgon2id(hash)
		if err != nil {
			return false
		}
		got := argon2.IDKey([]byte(password), a.salt, a.time, a.memory, a.threads, uint32(len(a.key)))
		return subtle.ConstantTimeCompare(got, a.key) == 1
	case strings.HasPrefix(hash, "$2"):
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
	}
	return false
}

// dummyHash is checked for unknown users, so that a wrong name takes as long
// as a wrong password.
var dummyHash = "$2a$10$un6OL4oqhvRqbCcaotmkk.wIdZ4IeEE3nvUdMp681woFRl0h3Skfa" // of "x"
