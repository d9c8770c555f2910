/*
 * vfio-demo-vmm internals: helpers a guest driver would have (config and BAR accessors,
 * capability walk, eventfd waits, guest RAM) and the scenarios, one file per device.
 */
#ifndef VB_DEMO_VMM_H
#define VB_DEMO_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vfiobroker/client.h>

/* What a scenario proved, summed over the run. */
struct vmm_figures {
	unsigned devices;
	uint64_t dma_bytes;
	unsigned interrupts;
};

/*
 * A long-running loop (edu-loop, e1000e-loop): it runs until SIGTERM or SIGINT (after the
 * iteration in progress) or until its deadline; SIGUSR1 pauses it between two iterations, where
 * the VMM holds only its steady state (the mappings and interrupt routes it set up at start),
 * and a second SIGUSR1 resumes it. It prints "paused: ..." and "resumed" as it does, and a
 * "progress: ..." line at most once a second, so that a test can follow it through a log.
 */
struct vmm_loop {
	const char *name;
	double t0_us, deadline_us, last_print_us;
	unsigned long iterations;
	double max_call_us;    /* the longest request that needed the broker (DMA map, SET_IRQS) */
	unsigned long retries; /* requests retried after -ETIMEDOUT (vmm_loop_retry) */
	bool paused;
};

struct vmm_ram {
	int fd;
	uint8_t *mem;
	size_t size;
};

void vmm_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vmm_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Turns a negative errno from the library into a failure message; returns 0 or -1. */
int vmm_check(struct vfb_dev *dev, int r, const char *what);
double vmm_now_us(void);

int vmm_cfg_read16(struct vfb_dev *dev, uint32_t off, uint16_t *val);
int vmm_cfg_write16(struct vfb_dev *dev, uint32_t off, uint16_t val);
int vmm_cfg_read32(struct vfb_dev *dev, uint32_t off, uint32_t *val);
int vmm_cfg_write32(struct vfb_dev *dev, uint32_t off, uint32_t val);
int vmm_bar_read32(struct vfb_dev *dev, uint32_t bar, uint64_t off, uint32_t *val);
int vmm_bar_write32(struct vfb_dev *dev, uint32_t bar, uint64_t off, uint32_t val);
int vmm_find_cap(struct vfb_dev *dev, uint8_t id, uint32_t *ret);
int vmm_enable_device(struct vfb_dev *dev);
int64_t vmm_wait_eventfd(int fd, int timeout_ms);
int vmm_ram_new(size_t size, struct vmm_ram *ret);
void vmm_ram_free(struct vmm_ram *ram);
int vmm_connect(const char *path, struct vfb_dev **ret, struct vfb_device_info *info);

/* Parses SECONDS (1..86400) and blocks the loop's signals; returns 0 or -1 after saying why. */
int vmm_loop_init(struct vmm_loop *l, const char *name, const char *seconds);
/* Between two iterations: takes pause, resume and stop requests; false when the loop is done. */
bool vmm_loop_next(struct vmm_loop *l, const struct vmm_figures *fig);
/* Times one request that needs the broker: call with the start time once it returned. */
void vmm_loop_call(struct vmm_loop *l, double t0_us);
/*
 * After a request that needs the broker returned r: whether to send it again. Only -ETIMEDOUT,
 * at most twice: the worker waited for a broker that never answered (one killed in the middle
 * of this request, or none ran), and the next broker undid whatever part of it the kernel had
 * done. The line it prints quotes the worker's message (vfb_dev_last_error()).
 */
bool vmm_loop_retry(struct vmm_loop *l, struct vfb_dev *dev, int r, int *tries, const char *what);
void vmm_loop_end(struct vmm_loop *l, const struct vmm_figures *fig);

/* Scenarios: return 0 when every check held, -1 after printing why not. */
int vmm_edu_dma(char **sockets, struct vmm_figures *fig);
int vmm_edu_msi(char **sockets, struct vmm_figures *fig);
int vmm_edu_intx(char **sockets, struct vmm_figures *fig);
int vmm_e1000e_msix(char **sockets, struct vmm_figures *fig);
int vmm_e1000e_msix_masked(char **sockets, struct vmm_figures *fig);
int vmm_nvme_bars(char **sockets, struct vmm_figures *fig);
int vmm_reconnect(char **sockets, struct vmm_figures *fig);
int vmm_hold(char **sockets, struct vmm_figures *fig);
int vmm_reset(char **sockets, struct vmm_figures *fig);
int vmm_flr(char **sockets, struct vmm_figures *fig);
int vmm_session(char **sockets, struct vmm_figures *fig);
int vmm_edu_loop(char **args, struct vmm_figures *fig);
int vmm_e1000e_loop(char **args, struct vmm_figures *fig);
int vmm_session_edu(const char *path, struct vmm_figures *fig);
int vmm_session_e1000e(const char *path, struct vmm_figures *fig);

#endif
