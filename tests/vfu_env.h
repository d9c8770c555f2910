/*
 * vfu_env: the vfio-worker of test_vfio_user.c and test_vfio_user_framing.c, started in
 * standalone mode on a device image (its seccomp filter loaded except in sanitizer builds), with
 * a client connected to its vfio-user socket and versioned (f->fd); and the messages and checks
 * those tests share.
 */
#ifndef VB_TESTS_VFU_ENV_H
#define VB_TESTS_VFU_ENV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/vfio.h>

#include "vfu_client.h"

#define F_REPLY	   1u
#define F_NO_REPLY (1u << 4)
#define F_ERROR	   (1u << 5)

struct fx {
	pid_t pid;
	char dir[64];
	char sock[128];	  /* vfio-user */
	char native[128]; /* the native protocol's socket */
	int fd;		  /* a connected, versioned client */
};

/* How long a test waits for the worker: long, because a busy machine can starve it for
 * seconds; a worker that never comes up still fails the test. */
#define WAIT_MS 60000

#define TRIG_EVENTFD (VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER)
#define TRIG_NONE    (VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER)

/* The VERSION payload every session starts with: the capabilities QEMU offers. */
extern const char default_json[];

/* cmocka setups: the worker on e1000e.img, nvme.img, edu.img; and its teardown, which fails
 * unless SIGTERM ended it with status 0 (a seccomp kill would show as SIGSYS). */
int setup_e1000e(void **state);
int setup_nvme(void **state);
int setup_edu(void **state);
int teardown(void **state);
/* How many fds the worker holds (/proc/PID/fd). */
int worker_fds(const struct fx *f);
/* A fresh connection, not versioned yet (reconnect_bare), or versioned (reconnect). */
void reconnect_bare(struct fx *f);
void reconnect(struct fx *f);
/* Sends a command and expects an error reply with `err` (the header alone), or success. */
void expect_error(int fd, uint16_t cmd, const void *p, size_t len, const int *fds, size_t nfds,
		  int err);
void expect_ok(int fd, uint16_t cmd, const void *p, size_t len, const int *fds, size_t nfds,
	       struct vfu_reply *r);
/* The payloads of DMA_MAP, DMA_UNMAP and SET_IRQS. */
void dma_map_msg(uint8_t *p, uint32_t flags, uint64_t off, uint64_t iova, uint64_t size);
void dma_unmap_msg(uint8_t *p, uint32_t flags, uint64_t iova, uint64_t size);
void set_irqs_msg(uint8_t *p, uint32_t flags, uint32_t index, uint32_t start, uint32_t count);

#endif
