package aethercache

/*
#include <stdlib.h>
#include <string.h>
#include <aether_cache/aether_cache.h>
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// maskResult turns a masking status into (masked, error); ENOTFOUND means
// "the mask is null" and gives ("", nil).
func maskResult(rc C.int, buf *C.acache_buf) (string, error) {
	defer C.acache_buf_dispose(buf)
	if rc == C.int(StatusNotFound) {
		return "", nil
	}
	if rc < 0 {
		return "", lastError(rc)
	}
	return C.GoStringN(buf.ptr, C.int(buf.size)), nil
}

// MaskKey masks a key as Aether displays it (first prefixLen characters,
// "********", last suffixLen). "" gives "".
func MaskKey(key string, prefixLen, suffixLen uint) (string, error) {
	if key == "" {
		return "", nil
	}
	k := C.CBytes([]byte(key))
	defer C.free(k)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var buf C.acache_buf
	rc := C.acache_mask_key(&buf, (*C.char)(k), C.size_t(len(key)), C.uint(prefixLen),
		C.uint(suffixLen))
	return maskResult(rc, &buf)
}

// DecryptAndMask decrypts a stored key column with the handle's encryption
// key and masks it; "" for an empty value; ErrCrypto when it does not decrypt.
func (c *Cache) DecryptAndMask(stored string) (string, error) {
	var cs cstrings
	defer cs.free()
	s := cs.str(stored)
	var buf C.acache_buf
	var rc C.int
	err := c.call(func(h *C.acache) C.int {
		rc = C.acache_decrypt_and_mask(&buf, h, s)
		if rc == C.int(StatusNotFound) {
			return 0 // an empty key, not a failure
		}
		return rc
	})
	if err != nil {
		C.acache_buf_dispose(&buf)
		return "", err
	}
	return maskResult(rc, &buf)
}

// DecryptAndMaskWithKey is DecryptAndMask with a per-call ENCRYPTION_KEY
// (slow: a passphrase goes through PBKDF2 on every call).
func DecryptAndMaskWithKey(encryptionKey, stored string) (string, error) {
	k := C.CString(encryptionKey)
	defer func() {
		C.memset(unsafe.Pointer(k), 0, C.size_t(len(encryptionKey)))
		C.free(unsafe.Pointer(k))
	}()
	s := C.CString(stored)
	defer C.free(unsafe.Pointer(s))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var buf C.acache_buf
	rc := C.acache_decrypt_and_mask_with_key(&buf, k, s)
	return maskResult(rc, &buf)
}
