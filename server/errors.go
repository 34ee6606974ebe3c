package server

import (
	"errors"
	"net/http"
)

// Sentinel errors of the core. Handlers wrap them with %w and detail; httpStatus
// maps them to HTTP statuses and bayeuxError (in the Bayeux files) to error strings.
var (
	ErrBadMessage     = errors.New("bad message")
	ErrBadChannel     = errors.New("bad channel name")
	ErrBadClientID    = errors.New("bad client id")
	ErrTooLarge       = errors.New("request too large")
	ErrNotFound       = errors.New("not found")
	ErrMethod         = errors.New("method not allowed")
	ErrTooMany        = errors.New("too many connections")
	ErrUnknownClient  = errors.New("unknown client")
	ErrForbidden      = errors.New("forbidden")
	ErrClosed         = errors.New("server closed")
	ErrTooManyClients = errors.New("too many clients")
)

// httpStatus maps an error from the core to the HTTP status a client sees.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrUnknownClient):
		return http.StatusNotFound
	case errors.Is(err, ErrMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, ErrUnauthenticated), errors.Is(err, ErrTokenExpired):
		return http.StatusUnauthorized // a (fresh) token or login will do
	case errors.Is(err, ErrChannelBudget):
		return http.StatusTooManyRequests // with Retry-After: the bucket refills
	case errors.Is(err, ErrTooManySubscriptions), errors.Is(err, ErrTooManyChannels):
		return http.StatusForbidden // retrying the same request will not help
	case overLimit(err):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, ErrBadMessage), errors.Is(err, ErrBadChannel), errors.Is(err, ErrBadClientID):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}
