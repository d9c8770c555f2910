/*
 * fdstore: the broker's fds kept outside its process (systemd's fd store, or the handover of a
 * re-exec). Trusts the fds its caller gives it; checks every name against systemd's FDNAME
 * rules, because systemd refuses a bad one only in its own log. What comes back at start
 * (brk_fdstore_receive) is only sorted by name here: the adopter checks every fd.
 */
#include "fdstore.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "base.h"

extern char **environ;

struct fds_slot {
	char name[BRK_FDSTORE_NAME_MAX + 1];
	int fd;
};

struct brk_fdstore {
	bool systemd;
	size_t max;
	struct fds_slot *slot;
	size_t n, cap;
};

int brk_fdstore_new(bool systemd, size_t max, struct brk_fdstore **ret)
{
	struct brk_fdstore *s;
	const char *e = getenv("NOTIFY_SOCKET");

	if (systemd && (!e || !*e))
		return -ENOTCONN;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->systemd = systemd;
	s->max = max;
	*ret = s;
	return 0;
}

void brk_fdstore_free(struct brk_fdstore *s)
{
	if (!s)
		return;
	free(s->slot);
	free(s);
}

bool brk_fdstore_systemd(const struct brk_fdstore *s)
{
	return s->systemd;
}

size_t brk_fdstore_count(const struct brk_fdstore *s)
{
	return s->n;
}

bool brk_fdstore_name_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > BRK_FDSTORE_NAME_MAX)
		return false;
	for (const char *p = name; *p; p++)
		if (*p < 0x21 || *p > 0x7e || *p == ':')
			return false;
	return true;
}

int brk_fdstore_name(char *buf, size_t len, const char *kind, const char *id)
{
	int n = id ? snprintf(buf, len, "%s.%s", kind, id) : snprintf(buf, len, "%s", kind);

	if (n < 0 || (size_t)n >= len || n > BRK_FDSTORE_NAME_MAX)
		return -ENAMETOOLONG;
	for (char *p = buf; *p; p++)
		if (*p == ':')
			*p = '-';
	return brk_fdstore_name_valid(buf) ? 0 : -EINVAL;
}

/* DDDD-BB-DD.F: the shape a BDF takes in a name. */
static bool fds_bdf_shaped(const char *id)
{
	return strlen(id) == 12 && id[4] == '-' && id[7] == '-' && id[10] == '.';
}

int brk_fdstore_name_id(const char *name, const char *kind, char *id, size_t len)
{
	size_t klen = strlen(kind);

	if (strncmp(name, kind, klen) != 0 || name[klen] != '.' || !name[klen + 1])
		return -ENOENT;
	if ((size_t)snprintf(id, len, "%s", name + klen + 1) >= len)
		return -ENAMETOOLONG;
	if (fds_bdf_shaped(id)) {
		id[4] = ':';
		id[7] = ':';
	}
	return 0;
}

static ssize_t fds_find(const struct brk_fdstore *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->slot[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

/* One message to systemd; 0 when it has been sent. */
static int fds_notify(const char *state, const int *fd)
{
	int r = sd_pid_notify_with_fds(0, 0, state, fd, fd ? 1 : 0);

	return r < 0 ? r : r == 0 ? -ENOTCONN : 0;
}

static int fds_systemd_remove(const char *name)
{
	char msg[sizeof("FDSTOREREMOVE=1\nFDNAME=") + BRK_FDSTORE_NAME_MAX];

	snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	return fds_notify(msg, NULL);
}

static int fds_put(struct brk_fdstore *s, const char *name, int fd, bool systemd)
{
	char msg[sizeof("FDSTORE=1\nFDPOLL=0\nFDNAME=") + BRK_FDSTORE_NAME_MAX];
	ssize_t i;
	int r;

	if (fd < 0 || !brk_fdstore_name_valid(name))
		return -EINVAL;
	i = fds_find(s, name);
	if (i < 0 && s->max && s->n >= s->max)
		return -ENOSPC;
	if (i < 0 && s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct fds_slot *ns = realloc(s->slot, cap * sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		s->slot = ns;
		s->cap = cap;
	}
	if (systemd) {
		/* systemd keeps every fd sent under a name, so a replaced one is removed first. The
		 * new fd is not in use yet: losing it to a crash in between loses nothing. */
		if (i >= 0 && (r = fds_systemd_remove(name)) < 0)
			return r;
		/* FDPOLL=0: systemd would otherwise drop an fd that reports EPOLLHUP or EPOLLERR
		 * (a dead worker's channel) behind our back, before the adopter has seen it. */
		snprintf(msg, sizeof(msg), "FDSTORE=1\nFDPOLL=0\nFDNAME=%s", name);
		r = fds_notify(msg, &fd);
		if (r < 0) {
			if (i >= 0)
				memmove(&s->slot[i], &s->slot[i + 1],
					(s->n - (size_t)i - 1) * sizeof(s->slot[0]));
			s->n -= i >= 0;
			return r;
		}
	}
	if (i < 0) {
		i = (ssize_t)s->n++;
		snprintf(s->slot[i].name, sizeof(s->slot[i].name), "%s", name);
	}
	s->slot[i].fd = fd;
	return 0;
}

int brk_fdstore_put(struct brk_fdstore *s, const char *name, int fd)
{
	return fds_put(s, name, fd, s->systemd);
}

int brk_fdstore_put_local(struct brk_fdstore *s, const char *name, int fd)
{
	return fds_put(s, name, fd, false);
}

int brk_fdstore_remove(struct brk_fdstore *s, const char *name)
{
	ssize_t i = fds_find(s, name);

	if (i < 0)
		return -ENOENT;
	memmove(&s->slot[i], &s->slot[i + 1], (s->n - (size_t)i - 1) * sizeof(s->slot[0]));
	s->n--;
	return s->systemd ? fds_systemd_remove(name) : 0;
}

int brk_fdstore_forget(struct brk_fdstore *s, const char *name)
{
	ssize_t i = fds_find(s, name);

	if (!brk_fdstore_name_valid(name))
		return -EINVAL;
	if (i >= 0) {
		memmove(&s->slot[i], &s->slot[i + 1], (s->n - (size_t)i - 1) * sizeof(s->slot[0]));
		s->n--;
	}
	return s->systemd ? fds_systemd_remove(name) : 0;
}

int brk_fdstore_get(const struct brk_fdstore *s, const char *name)
{
	ssize_t i = fds_find(s, name);

	return i < 0 ? -ENOENT : s->slot[i].fd;
}

/* ---- reading back ------------------------------------------------------------------------- */

static void fds_strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

int brk_fdstore_receive(struct brk_fdstore_set **ret)
{
	_cleanup_free_ struct brk_fdstore_set *set = NULL;
	char **names = NULL;
	int n;

	set = calloc(1, sizeof(*set));
	if (!set)
		return -ENOMEM;
	n = sd_listen_fds_with_names(1, &names);
	if (n < 0)
		return n;
	if (n > 0) {
		set->e = calloc((size_t)n, sizeof(*set->e));
		if (!set->e) {
			fds_strv_free(names);
			for (int i = 0; i < n; i++)
				close(SD_LISTEN_FDS_START + i);
			return -ENOMEM;
		}
	}
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;

		/* sd_listen_fds() sets close-on-exec already; a worker must never inherit these. */
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		set->e[i].fd = fd;
		set->e[i].name = names[i];
		names[i] = NULL;
	}
	set->n = (size_t)n;
	fds_strv_free(names);
	*ret = TAKE_PTR(set);
	return 0;
}

int brk_fdstore_set_take(struct brk_fdstore_set *set, const char *name)
{
	for (size_t i = 0; i < set->n; i++) {
		if (set->e[i].fd >= 0 && strcmp(set->e[i].name, name) == 0) {
			int fd = set->e[i].fd;

			set->e[i].fd = -1;
			return fd;
		}
	}
	return -ENOENT;
}

void brk_fdstore_set_free(struct brk_fdstore_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++) {
		if (set->e[i].fd >= 0)
			close(set->e[i].fd);
		free(set->e[i].name);
	}
	free(set->e);
	free(set);
}

/* ---- re-exec ------------------------------------------------------------------------------ */

/* The environment minus LISTEN_*, plus the handover's three. */
static char **fds_exec_env(const struct brk_fdstore *s)
{
	size_t ne = 0, k = 0, namelen = 0;
	char **env, *names;

	for (char **p = environ; *p; p++)
		ne++;
	for (size_t i = 0; i < s->n; i++)
		namelen += strlen(s->slot[i].name) + 1;
	env = calloc(ne + 4, sizeof(*env));
	names = malloc(sizeof("LISTEN_FDNAMES=") + namelen);
	if (!env || !names) {
		free(env);
		free(names);
		return NULL;
	}
	for (char **p = environ; *p; p++)
		if (strncmp(*p, "LISTEN_", 7) != 0)
			env[k++] = *p;
	strcpy(names, "LISTEN_FDNAMES=");
	for (size_t i = 0; i < s->n; i++) {
		if (i)
			strcat(names, ":");
		strcat(names, s->slot[i].name);
	}
	env[k++] = names;
	env[k] = NULL;
	return env;
}

int brk_fdstore_exec(const struct brk_fdstore *s, int exe_fd, char *const argv[], bool *moved)
{
	const int first = SD_LISTEN_FDS_START;
	const int above = first + (int)s->n;
	char pid_env[32], n_env[32];
	_cleanup_free_ int *tmp = NULL;
	_cleanup_close_ int exe = -1;
	char **env;
	sigset_t none;
	struct stat st;
	size_t k;

	*moved = false;
	if (fstat(exe_fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111))
		return -EACCES;
	tmp = calloc(s->n + 1, sizeof(*tmp));
	env = fds_exec_env(s);
	if (!tmp || !env)
		goto nomem;
	/* Everything above the target range first, the executable too, so that moving one fd into
	 * place can never overwrite another that is still to be moved. */
	exe = fcntl(exe_fd, F_DUPFD_CLOEXEC, above);
	if (exe < 0)
		goto fail;
	for (k = 0; k < s->n; k++) {
		tmp[k] = fcntl(s->slot[k].fd, F_DUPFD_CLOEXEC, above);
		if (tmp[k] < 0)
			goto fail;
	}
	*moved = true;
	for (k = 0; k < s->n; k++)
		if (dup3(tmp[k], first + (int)k, 0) < 0) /* no O_CLOEXEC: the new image gets it */
			goto fail;
	snprintf(pid_env, sizeof(pid_env), "LISTEN_PID=%d", (int)getpid());
	snprintf(n_env, sizeof(n_env), "LISTEN_FDS=%zu", s->n);
	for (k = 0; env[k]; k++)
		;
	env[k] = pid_env;
	env[k + 1] = n_env;
	env[k + 2] = NULL;
	/* A mask set by whoever called us would stay on in the new image. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execveat(exe, "", argv, env, AT_EMPTY_PATH);
fail:
	k = (size_t)errno;
	for (size_t i = 0; tmp && i < s->n; i++)
		if (tmp[i] > 0)
			close(tmp[i]);
	if (env) {
		for (size_t i = 0; env[i]; i++)
			if (strncmp(env[i], "LISTEN_FDNAMES=", 15) == 0)
				free(env[i]);
		free(env);
	}
	return -(int)k;
nomem:
	errno = ENOMEM;
	goto fail;
}
