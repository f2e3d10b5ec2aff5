/* Every INIT macro compiles cleanly under -Wextra -pedantic in user code. */
#include <aether_cache/aether_cache.h>
#include <aether_cache/sys/catalog.h>
#include <aether_cache/sys/errors.h>
#include <aether_cache/sys/store.h>

int use_macros(void);
int use_macros(void)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    acache_touch t = ACACHE_TOUCH_INIT;
    acache_target g = ACACHE_TARGET_INIT;
    acache_buf b = ACACHE_BUF_INIT;
    acache_stats s = {.version = ACACHE_STATS_VERSION};
    return (int)(o.version + t.version + g.version + s.version) + (b.ptr == 0);
}
