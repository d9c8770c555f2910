/*
 * log: the one place where vfio-brokerd formats what it tells the operator. Plain lines on
 * stderr ("vfio-brokerd: warning: ..."); when stderr is connected to the journal (systemd sets
 * JOURNAL_STREAM) each line carries a "<N>" syslog priority prefix so journald keeps the level.
 * Only the process top (daemon, control, supervision) logs; the VFIO core library does not.
 */
#ifndef VB_BROKER_LOG_H
#define VB_BROKER_LOG_H

#include <stdarg.h>
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
void brk_logv(int prio, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Logs "message: strerror(-err)" and returns `err` (a negative errno), systemd style:
 *   if (r < 0) return brk_log_errno(LOG_ERR, r, "cannot open %s", path); */
int brk_log_errno(int prio, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define brk_err(...)	brk_log(LOG_ERR, __VA_ARGS__)
#define brk_warn(...)	brk_log(LOG_WARNING, __VA_ARGS__)
#define brk_notice(...) brk_log(LOG_NOTICE, __VA_ARGS__)
#define brk_info(...)	brk_log(LOG_INFO, __VA_ARGS__)
#define brk_debug(...)	brk_log(LOG_DEBUG, __VA_ARGS__)

#endif
