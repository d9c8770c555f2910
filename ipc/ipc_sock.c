/*
 * ipc_sock: AF_UNIX SOCK_SEQPACKET sockets: pairs, listening sockets on a path, accept, connect
 * and the peer's kernel-reported credentials; and SOCK_STREAM listening sockets for vfio-user.
 *
 * Trusts the kernel's SO_PEERCRED and nothing found at a socket path: an existing file there is
 * replaced only when it is a socket nobody listens on any more.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base.h"
#include "ipc.h"

int ipc_socketpair(int ret_fds[2])
{
	int fds[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0)
		return -errno;
	ret_fds[0] = fds[0];
	ret_fds[1] = fds[1];
	return 0;
}

static int sockaddr_from_path(const char *path, struct sockaddr_un *sa)
{
	size_t len;

	if (!path || !*path)
		return -EINVAL;
	len = strlen(path);
	if (len >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, len + 1);
	return 0;
}

/* A socket file left behind by a dead listener may go; a live listener's socket, or anything
 * that is not a socket, may not. */
static int remove_stale_socket(const struct sockaddr_un *sa, int type)
{
	_cleanup_close_ int fd = -1;
	struct stat st;

	if (lstat(sa->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		return -EADDRINUSE;
	if (errno != ECONNREFUSED)
		return -errno;
	if (unlink(sa->sun_path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* The name a listening socket is bound under before it is renamed to `sa`'s: the same directory,
 * so that the rename is atomic. 0, or -ENAMETOOLONG when it does not fit in sun_path. */
static int temp_sockaddr(const struct sockaddr_un *sa, struct sockaddr_un *tmp)
{
	const char *slash = strrchr(sa->sun_path, '/');
	int dir = slash ? (int)(slash - sa->sun_path + 1) : 0;
	int n;

	*tmp = *sa;
	n = snprintf(tmp->sun_path, sizeof(tmp->sun_path), "%.*s.vb-listen.%ld", dir, sa->sun_path,
		     (long)getpid());
	return n > 0 && (size_t)n < sizeof(tmp->sun_path) ? 0 : -ENAMETOOLONG;
}

/*
 * The socket file appears at `path` only once it listens: connect() is refused (ECONNREFUSED)
 * between bind() and listen(), so a client that waits for the path to exist (an orchestrator
 * after starting the broker, a test) and connects at once would otherwise be refused now and
 * then, on a busy machine. It is bound under a temporary name beside `path`, given its mode,
 * made to listen, then renamed into place (RENAME_NOREPLACE: a path created meanwhile by another
 * process stays, and this is -EADDRINUSE). A path so long that the temporary name does not fit
 * is bound in place, as before. (The socket's own address, which ss(8) shows, stays the
 * temporary name; connect() finds the socket by the inode at `path`.)
 */
static int listen_type(const char *path, int type, mode_t mode, int backlog, int *ret_fd)
{
	_cleanup_close_ int fd = -1;
	struct sockaddr_un sa, tmp;
	bool renamed;
	int r;

	if (mode & ~(mode_t)0777)
		return -EINVAL;
	r = sockaddr_from_path(path, &sa);
	if (r < 0)
		return r;
	r = remove_stale_socket(&sa, type);
	if (r < 0)
		return r;
	renamed = temp_sockaddr(&sa, &tmp) == 0;
	if (!renamed)
		tmp = sa;
	else /* one left by an earlier process of this pid, killed between bind and rename */
		(void)unlink(tmp.sun_path);
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (const struct sockaddr *)&tmp, sizeof(tmp)) < 0)
		return -errno;
	/* connect() checks the path's permissions and is refused until listen(): setting the mode
	 * between the two leaves no window with the umask's mode. */
	if (chmod(tmp.sun_path, mode) < 0 || listen(fd, backlog) < 0 ||
	    (renamed &&
	     renameat2(AT_FDCWD, tmp.sun_path, AT_FDCWD, sa.sun_path, RENAME_NOREPLACE) < 0)) {
		r = errno == EEXIST ? -EADDRINUSE : -errno;
		unlink(tmp.sun_path);
		return r;
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int ipc_listen(const char *path, mode_t mode, int backlog, int *ret_fd)
{
	return listen_type(path, SOCK_SEQPACKET, mode, backlog, ret_fd);
}

int ipc_listen_stream(const char *path, mode_t mode, int backlog, int *ret_fd)
{
	return listen_type(path, SOCK_STREAM, mode, backlog, ret_fd);
}

int ipc_accept(int listen_fd, int *ret_fd)
{
	int fd;

	do
		fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	*ret_fd = fd;
	return 0;
}

int ipc_connect(const char *path, int *ret_fd)
{
	_cleanup_close_ int fd = -1;
	struct sockaddr_un sa;
	int r;

	r = sockaddr_from_path(path, &sa);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	do
		r = connect(fd, (const struct sockaddr *)&sa, sizeof(sa));
	while (r < 0 && errno == EINTR);
	/* A retried connect() that the first attempt already completed. */
	if (r < 0 && errno == EISCONN)
		r = 0;
	if (r < 0)
		return -errno;
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int ipc_peer_cred(int fd, pid_t *ret_pid, uid_t *ret_uid, gid_t *ret_gid)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
		return -errno;
	if (len != sizeof(uc))
		return -EPROTO;
	if (ret_pid)
		*ret_pid = uc.pid;
	if (ret_uid)
		*ret_uid = uc.uid;
	if (ret_gid)
		*ret_gid = uc.gid;
	return 0;
}

int ipc_peer_in_group(int fd, gid_t gid)
{
	_cleanup_free_ gid_t *big = NULL;
	gid_t small[64], *groups = small;
	socklen_t len = sizeof(small);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
		if (errno != ERANGE)
			return -errno;
		/* The kernel said how much room the list needs (at most NGROUPS_MAX entries). */
		groups = big = malloc(len);
		if (!groups)
			return -ENOMEM;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
			return -errno;
	}
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		if (groups[i] == gid)
			return 1;
	return 0;
}
