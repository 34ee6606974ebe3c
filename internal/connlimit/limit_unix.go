//go:build unix

package connlimit

import "syscall"

// DescriptorLimit returns the process's soft limit of open files, 0 if
// unknown (or so large it is no limit).
func DescriptorLimit() int {
	var rl syscall.Rlimit
	// Cur is a uint64 on most systems, an int64 on FreeBSD: compared
	// through uint64 on both (a negative one, unlimited, is large).
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || uint64(rl.Cur) > 1<<30 {
		return 0
	}
	return int(rl.Cur)
}
