//go:build !linux

package main

import (
	"errors"
	"os"
)

var errNotLinux = errors.New("only on Linux")

func pinToCPU(int) error              { return errNotLinux }
func isTerminal(*os.File) bool        { return false }
func processCPU(int) (float64, error) { return 0, errNotLinux }
func ownCPUSeconds() float64          { return 0 }
