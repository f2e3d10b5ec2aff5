/* libaethercache umbrella header: every public header except sys/. */
#ifndef ACACHE_AETHER_CACHE_H
#define ACACHE_AETHER_CACHE_H

#include "admin.h"
#include "affinity.h"
#include "analysis.h"
#include "buffer.h"
#include "cache.h"
#include "common.h"
#include "crypto.h"
#include "errors.h"
#include "listing.h"
#include "mapping.h"
#include "version.h"

#endif
