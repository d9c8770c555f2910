/*
 * The fake worker of the libvfiobroker tests: a thread that speaks the device protocol
 * (ipc_proto_device) on the other end of a socketpair, answers from a config space and a BAR of
 * its own, records what it was asked and misbehaves on demand.
 */
#ifndef TEST_CLIENT_FAKE_H
#define TEST_CLIENT_FAKE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vfiobroker/client.h"

#define FAKE_BDF "0000:00:04.0"

struct piece {
	uint32_t off, size;
};

struct irq_batch {
	uint32_t index, start, count;
	bool resample;
	size_t nfds;
};

struct fake {
	/* Behaviour, set before the thread starts. */
	uint32_t hello_version;
	uint32_t max_fds;     /* announced in HelloReply */
	uint32_t max_message; /* announced in HelloReply */
	uint16_t error_type;  /* answer this type with an error... */
	int error_code;	      /* ...of this negative errno */
	uint16_t silent_type; /* never answer this type */
	uint16_t late_type;   /* answer this type only after late_ms */
	int late_ms;
	uint32_t broker_wait_ms;    /* announced in HelloReply */
	uint16_t event_before_type; /* send an event before answering this type */
	uint16_t event_after_type;  /* send an event after answering this type */
	bool bad_area;		    /* REGION_INFO: an area past the region's end */
	bool hangup_after_hello;
	bool accept_ring;  /* HELLO: say the ring was taken (and never serve it) */
	bool no_hello_fds; /* HELLO with fds: refused as a worker older than rings refuses it */
	/* State. */
	uint8_t cfg[4096];
	uint8_t bar[65536];
	int fd;
	int devfd; /* stands for the device fd that REGION_INFO hands out */
	pthread_t th;
	/* Records, read by the test after the thread ended. */
	char client[64];
	uint32_t hello_seen_version;
	struct piece reads[64], writes[64], rreads[64];
	size_t nreads, nwrites, nrreads;
	struct irq_batch irqs[32];
	size_t nirqs;
	size_t ndma;
	uint64_t dma_iova, dma_size, dma_offset;
	uint32_t dma_prot;
	size_t requests;
};

/* Starts a fake worker thread; returns the client end of its socket. */
int fake_start(struct fake *f);
/* Waits for the thread, which ends when the client hangs up. */
void fake_join(struct fake *f);
/* fake_start() plus vfb_dev_connect_fd(); fails the test when the handshake fails. */
struct vfb_dev *connect_fake(struct fake *f);
/* The real vfio-worker in standalone mode (tests that have it built): `worker` serving `image`
 * on a socket in a private directory, with `arg` (an option, or NULL) on its command line.
 * Returns once it listens; a worker that never does fails the test after TEST_HANG_MS. */
struct standalone_worker {
	char dir[32];
	char sock[96];
	pid_t pid; /* 0 when not running */
};
void standalone_worker_start(struct standalone_worker *w, const char *worker, const char *image,
			     const char *arg);
/* Ends it (SIGTERM), reaps it and removes its directory; nothing when it is not running. */
void standalone_worker_stop(struct standalone_worker *w);

/* Open fds of this process. */
int count_fds(void);
bool fd_readable(int fd, int timeout_ms);

#endif
