/*
 * log: formats and writes vfio-brokerd's messages. Responsible for the line format and the level
 * filter; trusts nothing it prints to be well formed, so control characters that a peer could
 * have placed in a name are escaped before they reach the operator's terminal or the journal.
 */
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int log_level = LOG_INFO;
static bool log_journal;
static const char *log_ident = "vfio-brokerd";

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

void brk_logv(int prio, const char *fmt, va_list ap)
{
	char raw[1024], line[2048];
	int saved = errno;

	if (prio > log_level)
		return;
	vsnprintf(raw, sizeof(raw), fmt, ap);
	log_escape(line, sizeof(line), raw);
	if (log_journal)
		fprintf(stderr, "<%d>%s\n", prio, line);
	else
		fprintf(stderr, "%s: %s: %s\n", log_ident, brk_log_level_to_string(prio), line);
	errno = saved;
}

void brk_log(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	brk_logv(prio, fmt, ap);
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
