/*
 * vfu_client: a small vfio-user client for tests, the guest test tool and the benchmark. It
 * speaks the wire format directly (blocking socket, one request at a time unless the caller
 * pipelines with vfu_cli_send/vfu_cli_recv) so that tests can also send what no real client
 * would. Errors are negative errno values.
 */
#ifndef VB_VFU_CLIENT_H
#define VB_VFU_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#define VFU_CLI_FDS_MAX 253

struct vfu_reply {
	uint16_t id, cmd;
	uint32_t size, flags, error;
	uint8_t *data; /* size - 16 bytes, malloc'ed */
	size_t len;
	int fds[VFU_CLI_FDS_MAX];
	size_t nfds;
};

int vfu_cli_connect(const char *path, int *ret_fd);
/* Sends one command: header (id, cmd, flags) + payload, `fds` with its first byte. */
int vfu_cli_send(int fd, uint16_t id, uint16_t cmd, uint32_t flags, const void *payload, size_t len,
		 const int *fds, size_t nfds);
/* Sends raw bytes (for framing tests). */
int vfu_cli_raw(int fd, const void *buf, size_t len, const int *fds, size_t nfds);
/* Receives one whole message within `timeout_ms`. -ETIMEDOUT, -EPIPE (closed), or 0. */
int vfu_cli_recv(int fd, int timeout_ms, struct vfu_reply *r);
void vfu_reply_free(struct vfu_reply *r);
/* send + recv; fails with -EPROTO when the reply's id or command differ. 0 when a reply came
 * (r->flags says whether it is an error). */
int vfu_cli_call(int fd, uint16_t cmd, const void *payload, size_t len, const int *fds, size_t nfds,
		 struct vfu_reply *r);
/* VERSION with `json` (NULL: none); 0 when the server accepted. */
int vfu_cli_version(int fd, const char *json, struct vfu_reply *r);
/* REGION_READ/WRITE of `count` bytes; the server's errno on an error reply. */
int vfu_cli_region_read(int fd, uint32_t region, uint64_t off, void *buf, uint32_t count);
int vfu_cli_region_write(int fd, uint32_t region, uint64_t off, const void *buf, uint32_t count,
			 int posted);

#endif
