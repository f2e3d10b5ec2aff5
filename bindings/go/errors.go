package aethercache

import "fmt"

// Error is a failed libaethercache call: the acache_status it returned and
// the thread's acache_last_error() message, read on the same OS thread right
// after the call.
type Error struct {
	Status  Status
	Message string
}

// Error formats the failure as "aethercache: MESSAGE (status N)".
func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("aethercache: %s (status %d)", statusText(e.Status), int(e.Status))
	}
	return fmt.Sprintf("aethercache: %s (status %d)", e.Message, int(e.Status))
}

// Is makes errors.Is(err, ErrNotFound) (and the other sentinels) match any
// Error with that status. A target with a message matches only that message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t.Status == e.Status && (t.Message == "" || t.Message == e.Message)
}

// Sentinel errors, one per status, for errors.Is.
var (
	ErrGeneric     = &Error{Status: StatusError}
	ErrNotFound    = &Error{Status: StatusNotFound}
	ErrInvalid     = &Error{Status: StatusInvalid}
	ErrStore       = &Error{Status: StatusStore}
	ErrCatalog     = &Error{Status: StatusCatalog}
	ErrCrypto      = &Error{Status: StatusCrypto}
	ErrNoMemory    = &Error{Status: StatusNoMemory}
	ErrUnsupported = &Error{Status: StatusUnsupported}
	// ErrClosed is returned by every call on a closed Cache; it is also an
	// ErrInvalid.
	ErrClosed = &Error{Status: StatusInvalid, Message: "the Cache is closed"}
)
