/*
 * LD_PRELOAD shim for the Janus baseline of bench/forwarding.py.
 *
 * libnice (Janus's ICE agent) skips interfaces flagged IFF_LOOPBACK when it
 * gathers host candidates, so a Janus confined to 127.0.0.1 would have no
 * candidate at all. This wraps getifaddrs() and clears IFF_LOOPBACK on every
 * entry; with `ice_enforce_list = "lo"` Janus then gathers 127.0.0.1 only.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stddef.h>

int getifaddrs(struct ifaddrs **ifap)
{
    static int (*real_getifaddrs)(struct ifaddrs **) = NULL;
    if (real_getifaddrs == NULL) {
        real_getifaddrs = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
        if (real_getifaddrs == NULL) {
            return -1;
        }
    }
    int result = real_getifaddrs(ifap);
    if (result == 0) {
        for (struct ifaddrs *ifa = *ifap; ifa != NULL; ifa = ifa->ifa_next) {
            ifa->ifa_flags &= ~IFF_LOOPBACK;
        }
    }
    return result;
}
