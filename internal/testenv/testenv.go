// Package testenv is what tests that drive real programs share: finding a
// program, and skipping loudly (or failing, under
// STARDUST_REQUIRE_INTEGRATION=1, as CI sets) when one is missing.
package testenv

import (
	"fmt"
	"os"
	"testing"

	"github.com/stardust-go/stardust/internal/proxycheck"
)

// RequireEnv names the environment variable that turns a missing program
// from a skip into a failure. CI sets it to 1.
const RequireEnv = "STARDUST_REQUIRE_INTEGRATION"

// MissingDependency skips the test with a loud reason, or fails it when the
// environment says the integration tests must run.
func MissingDependency(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s (%s=1, so this is a failure)", reason, RequireEnv)
	}
	t.Skipf("SKIPPED, NOT TESTED: %s (set %s=1 to make this a failure)", reason, RequireEnv)
}

// RequireProgram returns the path of a program the test runs, or skips the
// test naming the Debian package that provides it.
func RequireProgram(t testing.TB, name, debianPackage string) string {
	t.Helper()
	path, ok := LookProgram(name)
	if !ok {
		MissingDependency(t, fmt.Sprintf("%s not found: install the Debian package %s", name, debianPackage))
	}
	return path
}

// LookProgram finds a program on PATH or, as Debian installs servers in
// /usr/sbin, which is not on a normal user's PATH, there (the same search
// as stardust --check-proxy's).
func LookProgram(name string) (string, bool) {
	path, err := proxycheck.LookProgram(name)
	return path, err == nil
}
