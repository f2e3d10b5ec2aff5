/* libaethercache: export and linkage macros. */
#ifndef ACACHE_COMMON_H
#define ACACHE_COMMON_H

#if defined(_WIN32) && !defined(ACACHE_STATIC) && defined(ACACHE_BUILDING)
#define ACACHE_EXTERN __declspec(dllexport)
#elif defined(_WIN32) && !defined(ACACHE_STATIC)
#define ACACHE_EXTERN __declspec(dllimport)
#elif defined(__GNUC__) && __GNUC__ >= 4
#define ACACHE_EXTERN __attribute__((visibility("default")))
#else
#define ACACHE_EXTERN
#endif

#ifdef __cplusplus
#define ACACHE_BEGIN_DECL extern "C" {
#define ACACHE_END_DECL }
#else
#define ACACHE_BEGIN_DECL
#define ACACHE_END_DECL
#endif

#endif
