package connlimit

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestCapRefusesFastAndFreesOnClose(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedCalls := make(chan struct{}, 10)
	l := New(inner, 2, HTTPRefusal, func() { refusedCalls <- struct{}{} })
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	dial()
	first := <-accepted
	<-accepted
	// The third is answered and closed at once.
	third := dial()
	_ = third.SetReadDeadline(time.Now().Add(2 * time.Second))
	start := time.Now()
	got, _ := io.ReadAll(third)
	if !strings.HasPrefix(string(got), "HTTP/1.1 503") || time.Since(start) > time.Second {
		t.Fatalf("over the cap: %q after %s", got, time.Since(start))
	}
	<-refusedCalls
	if l.Refused() != 1 || l.Open() != 2 {
		t.Errorf("refused %d open %d", l.Refused(), l.Open())
	}
	// Closing one (twice: counted once) makes room for the next.
	first.Close()
	first.Close()
	dial()
	select {
	case <-accepted:
	case <-time.After(2 * time.Second):
		t.Fatal("no room after a close")
	}
	if l.Open() != 2 {
		t.Errorf("open %d", l.Open())
	}
}

func TestDefaultBelowLimit(t *testing.T) {
	if d := Default(20000); d >= 20000 || d < 17000 {
		t.Errorf("Default(20000) = %d", d)
	}
	if Default(0) != 0 {
		t.Error("unknown limit must mean no cap")
	}
}
