/*
 * vfu: the vfio-user server of one vfio-worker (protocol 0.1 as QEMU's
 * docs/interop/vfio-user.rst specifies it), on a SOCK_STREAM socket of its own. It gives a
 * stock VMM (QEMU's vfio-user-pci, cloud-hypervisor's --user-device) what kernel vfio-pci
 * would: config space and BARs through the worker's emulation and checks, the sparse-mmap
 * areas the device's policy allows, interrupts as VFIO SET_IRQS carried out by the backend (the
 * broker's checked path), DMA maps of the VMM's memfds through the backend's validated path,
 * and reset.
 *
 * One VMM at a time, over both protocols: `busy` says whether the native server holds the
 * device, and a connection that finds it held is closed at once. Who may connect is the
 * backend's decision (vmm_admit). When the VMM goes away its interrupt routes and DMA mappings
 * are dropped; the device state stays and the next VMM may connect.
 *
 * Trusts: the device model and the backend. Distrusts: every byte and fd a VMM sends.
 */
#ifndef VB_WKR_VFU_H
#define VB_WKR_VFU_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "backend.h"
#include "server_cfg.h"
#include "wkr.h"

/* What the server announces in its VERSION reply and then enforces. */
#define WKR_VFU_MAX_MSG_FDS   16	 /* QEMU refuses a server announcing more */
#define WKR_VFU_MAX_DATA_XFER (1u << 20) /* the spec's default; QEMU accepts <= 64 MiB */
#define WKR_VFU_MAX_DMA_MAPS  65535	 /* the spec's default, or the quota if smaller */
/* fds accepted with one SET_IRQS: cloud-hypervisor sends every vector's eventfd at once,
 * whatever max_msg_fds says; the kernel's SCM_MAX_FD bounds what one sendmsg can carry. */
#define WKR_VFU_MAX_IRQ_FDS 253

struct wkr_vfu;

int wkr_vfu_new(const struct wkr_server_cfg *cfg, struct wkr_vfu **ret);
/* Ends the session (without the backend teardown: the process is ending) and closes every
 * handle; `closed` runs once libuv has let go of them. */
void wkr_vfu_close(struct wkr_vfu *s, void (*closed)(void *data), void *data);
bool wkr_vfu_connected(const struct wkr_vfu *s);
/* Holds every VMM command until let go of: see wkr_serve_hold(). */
void wkr_vfu_hold(struct wkr_vfu *s, bool held);
/* Connected, or a connection is being admitted: the other protocol's VMM is refused. */
bool wkr_vfu_busy(const struct wkr_vfu *s);
uint64_t wkr_vfu_requests(const struct wkr_vfu *s);
/* Asks the VMM to let go: signals its REQ eventfd (as kernel vfio-pci does before an unbind)
 * and calls `done` once: true when it disconnects within `timeout_ms`, false on timeout or
 * when no VMM is connected (at once). -EBUSY while another removal is pending. */
int wkr_vfu_removal(struct wkr_vfu *s, uint32_t timeout_ms, void (*done)(void *data, bool acked),
		    void *data);

#endif
