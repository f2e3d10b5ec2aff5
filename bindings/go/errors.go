package aethercache

import "fmt"

// Error is a failed libaethercache call: the acache_status it returned and
// the thread's acache_last_error() message, read on the same OS thread right
// after the call.
type Error struct {
	Status  Status
	Message string
}

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
	ErrNotFound    = &Error{Status: StatusEnotfound}
	ErrInvalid     = &Error{Status: StatusEinvalid}
	ErrStore       = &Error{Status: StatusEstore}
	ErrCatalog     = &Error{Status: StatusEcatalog}
	ErrCrypto      = &Error{Status: StatusEcrypto}
	ErrNoMemory    = &Error{Status: StatusEnomem}
	ErrUnsupported = &Error{Status: StatusEunsupported}
	// ErrClosed is returned by every call on a closed Cache; it is also an
	// ErrInvalid.
	ErrClosed = &Error{Status: StatusEinvalid, Message: "the Cache is closed"}
)
