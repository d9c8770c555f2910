/*
 * vfu_wire: the vfio-user wire format (protocol 0.1, QEMU docs/interop/vfio-user.rst) as
 * offsets and little-endian accessors. No C struct is laid over peer bytes: every field is read
 * and written at its offset, so a short or oddly aligned buffer cannot be misread.
 */
#ifndef VB_VFU_WIRE_H
#define VB_VFU_WIRE_H

#include <stdint.h>
#include <string.h>

#include "le.h"

#define VFU_HDR_SIZE 16
#define VFU_MAJOR    0
#define VFU_MINOR    1

/* Header: id u16 @0, command u16 @2, size u32 @4 (header included), flags u32 @8, error u32
 * @12. */
#define VFU_F_TYPE_MASK	 0xfu
#define VFU_F_TYPE_CMD	 0x0u
#define VFU_F_TYPE_REPLY 0x1u
#define VFU_F_NO_REPLY	 (1u << 4)
#define VFU_F_ERROR	 (1u << 5)
#define VFU_F_KNOWN	 (VFU_F_TYPE_MASK | VFU_F_NO_REPLY | VFU_F_ERROR)

enum vfu_cmd {
	VFU_CMD_VERSION = 1,
	VFU_CMD_DMA_MAP = 2,
	VFU_CMD_DMA_UNMAP = 3,
	VFU_CMD_DEVICE_GET_INFO = 4,
	VFU_CMD_DEVICE_GET_REGION_INFO = 5,
	VFU_CMD_DEVICE_GET_REGION_IO_FDS = 6,
	VFU_CMD_DEVICE_GET_IRQ_INFO = 7,
	VFU_CMD_DEVICE_SET_IRQS = 8,
	VFU_CMD_REGION_READ = 9,
	VFU_CMD_REGION_WRITE = 10,
	VFU_CMD_DMA_READ = 11,
	VFU_CMD_DMA_WRITE = 12,
	VFU_CMD_DEVICE_RESET = 13,
};

/* Payload sizes (after the header) of the fixed parts. */
#define VFU_VERSION_SIZE     4	/* major u16, minor u16, then JSON with its NUL */
#define VFU_DMA_MAP_SIZE     32 /* argsz, flags, offset u64, address u64, size u64 */
#define VFU_DMA_UNMAP_SIZE   24 /* argsz, flags, address u64, size u64 */
#define VFU_DEV_INFO_SIZE    16 /* argsz, flags, num_regions, num_irqs */
#define VFU_REGION_INFO_SIZE 32 /* argsz, flags, index, cap_offset, size u64, offset u64 */
#define VFU_IRQ_INFO_SIZE    16 /* argsz, flags, index, count */
#define VFU_SET_IRQS_SIZE    20 /* argsz, flags, index, start, count, then data */
#define VFU_RW_SIZE	     16 /* offset u64, region u32, count u32, then data */

/* Sparse mmap capability in a region info reply: vfio_info_cap_header (id u16, version u16,
 * next u32), nr_areas u32, reserved u32, then {offset u64, size u64} per area. */
#define VFU_CAP_SPARSE_HDR  16
#define VFU_CAP_SPARSE_AREA 16

#define VFU_DMA_READ_FLAG  (1u << 0)
#define VFU_DMA_WRITE_FLAG (1u << 1)
/* DMA_UNMAP flags, as VFIO type1 numbers them. */
#define VFU_UNMAP_DIRTY_BITMAP (1u << 0)
#define VFU_UNMAP_ALL	       (1u << 1)

/* Host endianness per the spec; x86 and every host vfio-broker runs on are little endian, so
 * base/le.h serves. */
#define vfu_get16 vb_le16_get
#define vfu_get32 vb_le32_get
#define vfu_get64 vb_le64_get
#define vfu_put16 vb_le16_put
#define vfu_put32 vb_le32_put
#define vfu_put64 vb_le64_put

#endif
