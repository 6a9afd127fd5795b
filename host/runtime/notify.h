/* The service manager's notification protocol (sd_notify(3)): readiness, reloads and stopping,
 * sent to $NOTIFY_SOCKET when the process runs under one (systemd's Type=notify-reload, or a
 * test harness listening on its own socket); nothing happens without it. A message the reader
 * cannot take at once is dropped, never waited for: the loop does not block on a supervisor.
 *
 * Besides systemd's own fields, each message after a start or a reload carries
 * X_ARQONBUS_GENERATION=<n> (the generation in force) and, after a reload,
 * X_ARQONBUS_RELOAD=ok|failed, so that a supervisor learns the verdict without reading logs. */
#ifndef ARQ_HOST_NOTIFY_H
#define ARQ_HOST_NOTIFY_H

/* Started: READY=1 with the generation in force. */
void notify_ready(unsigned generation);
/* A reload begins: RELOADING=1 with MONOTONIC_USEC. */
void notify_reloading(void);
/* A reload ended (`error`: its first problem, or NULL): READY=1, the verdict and the
 * generation in force. */
void notify_reloaded(int ok, unsigned generation, const char *error);
/* A stop begins (after READY was sent): STOPPING=1. */
void notify_stopping(void);

#endif
