package aethercache

/*
#include <aether_cache/aether_cache.h>
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// goAffinityVisit is the acache_affinity_foreach callback of Records: the
// payload is a cgo.Handle of the *[]Affinity being filled. A file with an
// //export may only declare C functions in its preamble, hence this file.
//
//export goAffinityVisit
func goAffinityVisit(a *C.acache_affinity, payload unsafe.Pointer) C.int {
	out := cgo.Handle(uintptr(payload)).Value().(*[]Affinity)
	*out = append(*out, affinityFrom(a))
	return 0
}
