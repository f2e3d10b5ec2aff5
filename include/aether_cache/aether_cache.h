/* libaethercache umbrella header: every public header except sys/. */
#ifndef ACACHE_AETHER_CACHE_H
#define ACACHE_AETHER_CACHE_H

#include "common.h"
#include "version.h"
#include "errors.h"
#include "buffer.h"
#include "cache.h"
#include "affinity.h"
#include "admin.h"
#include "listing.h"
#include "mapping.h"
#include "analysis.h"
#include "crypto.h"

#endif
