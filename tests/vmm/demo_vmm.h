/*
 * vfio-demo-vmm internals: helpers a guest driver would have (config and BAR accessors,
 * capability walk, eventfd waits, guest RAM) and the scenarios, one file per device.
 */
#ifndef VB_DEMO_VMM_H
#define VB_DEMO_VMM_H

#include <stddef.h>
#include <stdint.h>

#include <vfiobroker/client.h>

/* What a scenario proved, summed over the run. */
struct vmm_figures {
	unsigned devices;
	uint64_t dma_bytes;
	unsigned interrupts;
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
int vmm_session_edu(const char *path, struct vmm_figures *fig);
int vmm_session_e1000e(const char *path, struct vmm_figures *fig);

#endif
