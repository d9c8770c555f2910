/*
 * log: formats and writes vfio-brokerd's messages. Responsible for the line format, the level
 * filter and the journal's structured fields; trusts nothing it prints to be well formed, so
 * control characters that a peer could have placed in a name are escaped before they reach the
 * operator's terminal or the journal. Trusts libsystemd's sd_journal_sendv to deliver an entry
 * (a datagram on /run/systemd/journal/socket, within the broker's seccomp policy) or fail.
 */
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "bdf.h"

static int log_level = LOG_INFO;
static bool log_journal;
static const char *log_ident = "vfio-brokerd";
static brk_log_resolver_fn log_resolver;
static void *log_resolver_ctx;

static const char *const level_names[] = {
    [LOG_EMERG] = "emergency", [LOG_ALERT] = "alert",	  [LOG_CRIT] = "critical",
    [LOG_ERR] = "error",       [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
    [LOG_INFO] = "info",       [LOG_DEBUG] = "debug",
};

void brk_log_set_level(int prio)
{
	if (prio >= LOG_EMERG && prio <= LOG_DEBUG)
		log_level = prio;
}

int brk_log_get_level(void)
{
	return log_level;
}

int brk_log_level_from_string(const char *s)
{
	/* Only the levels an operator would choose; "warn" and "err" as common spellings. */
	if (!strcmp(s, "err"))
		return LOG_ERR;
	if (!strcmp(s, "warn"))
		return LOG_WARNING;
	for (int p = LOG_ERR; p <= LOG_DEBUG; p++)
		if (!strcmp(s, level_names[p]))
			return p;
	return -EINVAL;
}

const char *brk_log_level_to_string(int prio)
{
	if (prio < LOG_EMERG || prio > LOG_DEBUG)
		return "unknown";
	return level_names[prio];
}

void brk_log_open(const char *ident)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (ident)
		log_ident = ident;
	log_journal = false;
	/* systemd documents JOURNAL_STREAM as "DEV:INODE" of the stream it connected; stderr may
	 * have been redirected since, so compare before trusting it. */
	if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0)
		log_journal = st.st_dev == (dev_t)dev && st.st_ino == (ino_t)ino;
}

int brk_log_to_journal(void)
{
	return log_journal;
}

void brk_log_set_resolver(brk_log_resolver_fn fn, void *ctx)
{
	log_resolver = fn;
	log_resolver_ctx = fn ? ctx : NULL;
}

/* Whether `s` starts with a canonical PCI address followed by ": " ("0000:01:00.0: "); copies
 * the address to bdf. */
static bool log_leading_bdf(const char *s, char bdf[VB_BDF_LEN])
{
	if (strnlen(s, VB_BDF_LEN) < VB_BDF_LEN - 1 || strncmp(s + VB_BDF_LEN - 1, ": ", 2) != 0)
		return false;
	memcpy(bdf, s, VB_BDF_LEN - 1);
	bdf[VB_BDF_LEN - 1] = '\0';
	return vb_bdf_parse(bdf, VB_BDF_STRICT, NULL) == 0;
}

/* One structured journal entry; false when it could not be sent (the caller falls back to
 * stderr, which journald reads as well). */
static bool log_journal_send(int prio, const struct brk_log_about *about, const char *line)
{
	char f_msg[2100], f_prio[16], f_ident[64], f_bdf[32], f_vm[96], f_pid[40];
	struct iovec iov[6];
	size_t n = 0;

#define LOG_FIELD(buf, ...)                                                        \
	do {                                                                       \
		int len_ = snprintf(buf, sizeof(buf), __VA_ARGS__);                \
		iov[n].iov_base = buf;                                             \
		iov[n++].iov_len = len_ < 0			? 0                \
				   : (size_t)len_ < sizeof(buf) ? (size_t)len_     \
								: sizeof(buf) - 1; \
	} while (0)
	LOG_FIELD(f_msg, "MESSAGE=%s", line);
	LOG_FIELD(f_prio, "PRIORITY=%d", prio);
	LOG_FIELD(f_ident, "SYSLOG_IDENTIFIER=%s", log_ident);
	if (about && about->bdf)
		LOG_FIELD(f_bdf, "VFIO_BDF=%s", about->bdf);
	/* VM names are checked ([A-Za-z0-9._-]) before any line can name them. */
	if (about && about->vm)
		LOG_FIELD(f_vm, "VFIO_VM=%s", about->vm);
	if (about && about->worker_pid > 0)
		LOG_FIELD(f_pid, "VFIO_WORKER_PID=%d", (int)about->worker_pid);
#undef LOG_FIELD
	return sd_journal_sendv(iov, (int)n) >= 0;
}

/* Copies `in` to `out` with control characters shown as \xNN, so that nothing a peer put in
 * a string (a VM name, a path) can forge a log line or a terminal escape. */
static void log_escape(char *out, size_t outsz, const char *in)
{
	size_t o = 0;

	for (; *in && o + 5 < outsz; in++) {
		unsigned char c = (unsigned char)*in;

		if (c < 0x20 || c == 0x7f)
			o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
}

__attribute__((format(printf, 3, 0))) static void
log_write(int prio, const struct brk_log_about *about, const char *fmt, va_list ap)
{
	struct brk_log_about found = {0};
	char raw[1024], line[2048], bdf[VB_BDF_LEN];

	vsnprintf(raw, sizeof(raw), fmt, ap);
	log_escape(line, sizeof(line), raw);
	if (log_journal) {
		if (!about && log_leading_bdf(line, bdf)) {
			found.bdf = bdf;
			if (log_resolver)
				log_resolver(log_resolver_ctx, bdf, &found);
			about = &found;
		}
		if (log_journal_send(prio, about, line))
			return;
		fprintf(stderr, "<%d>%s\n", prio, line);
	} else {
		fprintf(stderr, "%s: %s: %s\n", log_ident, brk_log_level_to_string(prio), line);
	}
}

__attribute__((format(printf, 2, 0))) static void log_v(int prio, const char *fmt, va_list ap)
{
	int saved = errno;

	if (prio > log_level)
		return;
	log_write(prio, NULL, fmt, ap);
	errno = saved;
}

void brk_log_about(int prio, const struct brk_log_about *about, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	if (prio > log_level)
		return;
	va_start(ap, fmt);
	log_write(prio, about, fmt, ap);
	va_end(ap);
	errno = saved;
}

void brk_log(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v(prio, fmt, ap);
	va_end(ap);
}

int brk_log_errno(int prio, int err, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (prio > log_level)
		return err;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	brk_log(prio, "%s: %s", msg, strerror(err < 0 ? -err : err));
	return err;
}
