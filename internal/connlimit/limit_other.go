//go:build !unix

package connlimit

// DescriptorLimit returns 0 (unknown): this system has no RLIMIT_NOFILE,
// so no cap is derived from it (Default(0) is none).
func DescriptorLimit() int { return 0 }
