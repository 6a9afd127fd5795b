#include "notify.h"

#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

/* STATUS= is one line of text: a newline in an error would start a field of its own. */
static void notify__status(char *out, size_t size, const char *prefix, const char *text)
{
    snprintf(out, size, "%s%s", prefix, text ? text : "");
    for (char *p = out; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

void notify_ready(unsigned generation)
{
    sd_notifyf(0, "READY=1\nSTATUS=Serving, configuration generation %u\nX_ARQONBUS_GENERATION=%u",
               generation, generation);
}

void notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
               (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
}

void notify_reloaded(int ok, unsigned generation, const char *error)
{
    char status[512];
    if (ok)
        snprintf(status, sizeof status, "Serving, configuration generation %u", generation);
    else
        notify__status(status, sizeof status,
                       "Reload failed, the running configuration stays: ", error);
    sd_notifyf(0, "READY=1\nSTATUS=%s\nX_ARQONBUS_RELOAD=%s\nX_ARQONBUS_GENERATION=%u", status,
               ok ? "ok" : "failed", generation);
}

void notify_stopping(void)
{
    sd_notify(0, "STOPPING=1\nSTATUS=Stopping");
}
