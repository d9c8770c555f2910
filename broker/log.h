/*
 * log: the one place where vfio-brokerd formats what it tells the operator. Plain lines on
 * stderr ("vfio-brokerd: warning: ..."); when stderr is connected to the journal (systemd sets
 * JOURNAL_STREAM) each line goes to journald as a structured entry instead: MESSAGE, PRIORITY,
 * SYSLOG_IDENTIFIER, and for a line about a device VFIO_BDF, VFIO_VM and VFIO_WORKER_PID, so that
 * `journalctl VFIO_BDF=0000:01:00.0` shows one device's history.
 * Only the process top (daemon, control, supervision) logs; the VFIO core library does not.
 */
#ifndef VB_BROKER_LOG_H
#define VB_BROKER_LOG_H

#include <stdarg.h>
#include <sys/types.h>
#include <syslog.h>

/* Levels are syslog priorities: LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG. */
void brk_log_set_level(int prio);
int brk_log_get_level(void);
/* Accepts "error", "warning", "notice", "info", "debug"; returns the priority or -EINVAL. */
int brk_log_level_from_string(const char *s);
const char *brk_log_level_to_string(int prio);

/* Re-reads JOURNAL_STREAM and whether stderr is still the stream it names. */
void brk_log_open(const char *ident);

void brk_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs "message: strerror(-err)" and returns `err` (a negative errno), systemd style:
 *   if (r < 0) return brk_log_errno(LOG_ERR, r, "cannot open %s", path); */
int brk_log_errno(int prio, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* What a line is about, for the journal's fields; NULL / 0 members are left out. */
struct brk_log_about {
	const char *bdf;
	const char *vm;
	pid_t worker_pid;
};

/* brk_log() for a line about a device, naming it explicitly. */
void brk_log_about(int prio, const struct brk_log_about *about, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The broker's lines about a device start with the device's canonical address
 * ("0000:01:00.0: worker 42 ready"). For such a line without an explicit brk_log_about, the
 * resolver (when one is set) fills in the VM and worker of that address from the broker's
 * registry; without one only VFIO_BDF is set. The resolver runs on the logging thread, which is
 * the event loop's: the broker logs nowhere else. fn NULL removes it. */
typedef void (*brk_log_resolver_fn)(void *ctx, const char *bdf, struct brk_log_about *about);
void brk_log_set_resolver(brk_log_resolver_fn fn, void *ctx);

/* Whether lines go to the journal (structured) rather than to stderr; set by brk_log_open. */
int brk_log_to_journal(void);

#define brk_err(...)	brk_log(LOG_ERR, __VA_ARGS__)
#define brk_warn(...)	brk_log(LOG_WARNING, __VA_ARGS__)
#define brk_notice(...) brk_log(LOG_NOTICE, __VA_ARGS__)
#define brk_info(...)	brk_log(LOG_INFO, __VA_ARGS__)
#define brk_debug(...)	brk_log(LOG_DEBUG, __VA_ARGS__)

#endif
