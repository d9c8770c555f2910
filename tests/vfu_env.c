/*
 * vfu_env: the vfio-worker under test and the messages its tests share (vfu_env.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "base.h"
#include "le.h"
#include "device.pb-c.h"
#include "ipc.h"
#include "vfu_client.h"
#include "ipc_test.h"
#include "test_memfd.h"
#include "test_wait.h"
#include "vfu_env.h"

/* Connects once the worker listens. The worker binds its socket after it starts, so the first
 * attempts may find nothing there; it exiting fails at once. */
static int connect_started(const struct fx *f, int *fd)
{
	for (int waited = 0; waited < WAIT_MS; waited += 10) {
		struct timespec ts = {0, 10 * 1000000};

		if (vfu_cli_connect(f->sock, fd) == 0)
			return 0;
		if (waitpid(f->pid, NULL, WNOHANG) == f->pid)
			return -ECHILD;
		nanosleep(&ts, NULL);
	}
	return -ETIMEDOUT;
}

const char default_json[] = "{\"capabilities\":{\"max_msg_fds\":16,\"max_data_xfer_size\":"
			    "1048576,\"pgsizes\":4096,\"max_dma_maps\":65535}}";

static int start(void **state, const char *image)
{
	struct fx *f = calloc(1, sizeof(*f));
	char img[512], vu[160], nat[160];
	struct vfu_reply r;

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/vb-vfu-test-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->sock, sizeof(f->sock), "%s/vfu.sock", f->dir);
	snprintf(f->native, sizeof(f->native), "%s/vmm.sock", f->dir);
	snprintf(img, sizeof(img), "--device-image=%s/%s", VB_FIXTURES, image);
	snprintf(vu, sizeof(vu), "--vfio-user=%s", f->sock);
	snprintf(nat, sizeof(nat), "--listen=%s", f->native);
	f->pid = fork();
	if (f->pid == 0) {
		char *argv[] = {VB_WORKER_BIN, img, vu, nat, "--seccomp=" VB_WORKER_SECCOMP, NULL};

		execv(argv[0], argv);
		_exit(127);
	}
	if (connect_started(f, &f->fd) < 0 || vfu_cli_version(f->fd, default_json, &r) < 0)
		return -1;
	vfu_reply_free(&r);
	*state = f;
	return 0;
}

int setup_e1000e(void **state)
{
	return start(state, "e1000e.img");
}

int setup_nvme(void **state)
{
	return start(state, "nvme.img");
}

int setup_edu(void **state)
{
	return start(state, "edu.img");
}

int teardown(void **state)
{
	struct fx *f = *state;
	int status = 0;

	if (f->fd >= 0)
		close(f->fd);
	kill(f->pid, SIGTERM);
	waitpid(f->pid, &status, 0);
	unlink(f->sock);
	unlink(f->native);
	rmdir(f->dir);
	free(f);
	/* SIGTERM ends the worker with status 0; a seccomp kill would show as SIGSYS. */
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int worker_fds(const struct fx *f)
{
	int n = count_pid_fds(f->pid);

	assert_true(n >= 0);
	return n;
}

/* A fresh connection, not versioned yet. The old session's hangup is settled before the new
 * connection is judged, so it gets in at once (issue 14, finding 5), and the fd count taken
 * after its first reply includes all of the old session's teardown. */
void reconnect_bare(struct fx *f)
{
	close(f->fd);
	f->fd = -1;
	assert_int_equal(vfu_cli_connect(f->sock, &f->fd), 0);
}

/* A fresh, versioned session. */
void reconnect(struct fx *f)
{
	struct vfu_reply r;

	reconnect_bare(f);
	assert_int_equal(vfu_cli_version(f->fd, default_json, &r), 0);
	vfu_reply_free(&r);
}

/* Sends a command and expects an error reply with `err`. */
void expect_error(int fd, uint16_t cmd, const void *p, size_t len, const int *fds, size_t nfds,
		  int err)
{
	struct vfu_reply r;

	assert_int_equal(vfu_cli_call(fd, cmd, p, len, fds, nfds, &r), 0);
	assert_true(r.flags & F_ERROR);
	assert_int_equal(r.flags & 0xf, F_REPLY);
	assert_int_equal(r.error, err);
	assert_int_equal(r.len, 0); /* an error reply is the header alone */
	vfu_reply_free(&r);
}

void expect_ok(int fd, uint16_t cmd, const void *p, size_t len, const int *fds, size_t nfds,
	       struct vfu_reply *r)
{
	assert_int_equal(vfu_cli_call(fd, cmd, p, len, fds, nfds, r), 0);
	if (r->flags & F_ERROR)
		fail_msg("command %u: error %u", cmd, r->error);
}

void dma_map_msg(uint8_t *p, uint32_t flags, uint64_t off, uint64_t iova, uint64_t size)
{
	vb_le32_put(p, 32);
	vb_le32_put(p + 4, flags);
	vb_le64_put(p + 8, off);
	vb_le64_put(p + 16, iova);
	vb_le64_put(p + 24, size);
}

void dma_unmap_msg(uint8_t *p, uint32_t flags, uint64_t iova, uint64_t size)
{
	vb_le32_put(p, 24);
	vb_le32_put(p + 4, flags);
	vb_le64_put(p + 8, iova);
	vb_le64_put(p + 16, size);
}

void set_irqs_msg(uint8_t *p, uint32_t flags, uint32_t index, uint32_t start, uint32_t count)
{
	vb_le32_put(p, 20);
	vb_le32_put(p + 4, flags);
	vb_le32_put(p + 8, index);
	vb_le32_put(p + 12, start);
	vb_le32_put(p + 16, count);
}
