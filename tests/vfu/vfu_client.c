/*
 * vfu_client: see vfu_client.h. Blocking socket with poll for the timeout; nothing here is
 * trusted by the server, so nothing here checks more than the tests need.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "le.h"
#include "vfu_client.h"

int vfu_cli_connect(const char *path, int *ret_fd)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	*ret_fd = fd;
	return 0;
}

int vfu_cli_raw(int fd, const void *buf, size_t len, const int *fds, size_t nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * VFU_CLI_FDS_MAX)];
		struct cmsghdr align;
	} ctl;
	const uint8_t *p = buf;

	if (nfds > VFU_CLI_FDS_MAX)
		return -EINVAL;
	while (len || nfds) {
		struct iovec iov = {(void *)p, len};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t n;

		if (nfds) {
			struct cmsghdr *cm;

			memset(ctl.b, 0, sizeof(ctl.b));
			mh.msg_control = ctl.b;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
		}
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		nfds = 0;
	}
	return 0;
}

int vfu_cli_send(int fd, uint16_t id, uint16_t cmd, uint32_t flags, const void *payload, size_t len,
		 const int *fds, size_t nfds)
{
	uint8_t *m = malloc(16 + len);
	int r;

	if (!m)
		return -ENOMEM;
	vb_le16_put(m, id);
	vb_le16_put(m + 2, cmd);
	vb_le32_put(m + 4, (uint32_t)(16 + len));
	vb_le32_put(m + 8, flags);
	vb_le32_put(m + 12, 0);
	if (len)
		memcpy(m + 16, payload, len);
	r = vfu_cli_raw(fd, m, 16 + len, fds, nfds);
	free(m);
	return r;
}

static int read_full(int fd, uint8_t *buf, size_t len, int timeout_ms, struct vfu_reply *r)
{
	while (len) {
		struct pollfd p = {fd, POLLIN, 0};
		int pr = poll(&p, 1, timeout_ms);
		union {
			char b[CMSG_SPACE(sizeof(int) * VFU_CLI_FDS_MAX)];
			struct cmsghdr align;
		} ctl;
		struct iovec iov;
		struct msghdr mh;
		ssize_t n;

		if (pr == 0)
			return -ETIMEDOUT;
		if (pr < 0 && errno != EINTR)
			return -errno;
		if (pr < 0)
			continue;
		iov = (struct iovec){buf, len};
		mh = (struct msghdr){.msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = ctl.b,
				     .msg_controllen = sizeof(ctl.b)};
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == ECONNRESET ? -EPIPE : -errno;
		if (n == 0)
			return -EPIPE;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			size_t k;

			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				int f;

				memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				if (r && r->nfds < VFU_CLI_FDS_MAX)
					r->fds[r->nfds++] = f;
				else
					close(f);
			}
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int vfu_cli_recv(int fd, int timeout_ms, struct vfu_reply *r)
{
	uint8_t h[16];
	int e;

	memset(r, 0, sizeof(*r));
	e = read_full(fd, h, 16, timeout_ms, r);
	if (e < 0)
		return e;
	r->id = (uint16_t)(h[0] | h[1] << 8);
	r->cmd = (uint16_t)(h[2] | h[3] << 8);
	r->size = vb_le32_get(h + 4);
	r->flags = vb_le32_get(h + 8);
	r->error = vb_le32_get(h + 12);
	if (r->size < 16)
		return -EBADMSG;
	r->len = r->size - 16;
	r->data = calloc(1, r->len + 1);
	if (!r->data)
		return -ENOMEM;
	return read_full(fd, r->data, r->len, timeout_ms, r);
}

void vfu_reply_free(struct vfu_reply *r)
{
	for (size_t i = 0; i < r->nfds; i++)
		close(r->fds[i]);
	r->nfds = 0;
	free(r->data);
	r->data = NULL;
}

int vfu_cli_call(int fd, uint16_t cmd, const void *payload, size_t len, const int *fds, size_t nfds,
		 struct vfu_reply *r)
{
	static uint16_t next_id = 100;
	uint16_t id = next_id++;
	int e;

	memset(r, 0, sizeof(*r));
	e = vfu_cli_send(fd, id, cmd, 0, payload, len, fds, nfds);
	if (e == 0)
		e = vfu_cli_recv(fd, 30000, r); /* generous: only a broken server waits it out */
	if (e == 0 && (r->id != id || r->cmd != cmd))
		e = -EPROTO;
	return e;
}

int vfu_cli_version(int fd, const char *json, struct vfu_reply *r)
{
	size_t jl = json ? strlen(json) + 1 : 0;
	uint8_t *p = calloc(1, 4 + jl);
	int e;

	if (!p)
		return -ENOMEM;
	vb_le16_put(p, 0);
	vb_le16_put(p + 2, 1);
	if (jl)
		memcpy(p + 4, json, jl);
	e = vfu_cli_call(fd, 1, p, 4 + jl, NULL, 0, r);
	free(p);
	if (e == 0 && (r->flags & (1u << 5)))
		e = -(int)r->error;
	return e;
}

int vfu_cli_region_read(int fd, uint32_t region, uint64_t off, void *buf, uint32_t count)
{
	uint8_t p[16];
	struct vfu_reply r;
	int e;

	vb_le32_put(p, (uint32_t)off);
	vb_le32_put(p + 4, (uint32_t)(off >> 32));
	vb_le32_put(p + 8, region);
	vb_le32_put(p + 12, count);
	e = vfu_cli_call(fd, 9, p, sizeof(p), NULL, 0, &r);
	if (e == 0 && (r.flags & (1u << 5)))
		e = -(int)r.error;
	else if (e == 0 && r.len != 16 + (size_t)count)
		e = -EBADMSG;
	if (e == 0)
		memcpy(buf, r.data + 16, count);
	vfu_reply_free(&r);
	return e;
}

int vfu_cli_region_write(int fd, uint32_t region, uint64_t off, const void *buf, uint32_t count,
			 int posted)
{
	uint8_t *p = malloc(16 + (size_t)count);
	struct vfu_reply r;
	int e;

	if (!p)
		return -ENOMEM;
	vb_le32_put(p, (uint32_t)off);
	vb_le32_put(p + 4, (uint32_t)(off >> 32));
	vb_le32_put(p + 8, region);
	vb_le32_put(p + 12, count);
	memcpy(p + 16, buf, count);
	if (posted) {
		e = vfu_cli_send(fd, 0xffff, 10, 1u << 4, p, 16 + (size_t)count, NULL, 0);
	} else {
		e = vfu_cli_call(fd, 10, p, 16 + (size_t)count, NULL, 0, &r);
		if (e == 0 && (r.flags & (1u << 5)))
			e = -(int)r.error;
		vfu_reply_free(&r);
	}
	free(p);
	return e;
}
