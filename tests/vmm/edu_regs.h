/*
 * QEMU's edu device (vendor 1234, device 11e8): the BAR0 register map that the test VMMs drive
 * (docs/specs/edu.rst in QEMU). One copy, shared by vfio-demo-vmm, vfio-grant-vmm and the
 * vfio-user client of the guest tests.
 */
#ifndef VB_TESTS_EDU_REGS_H
#define VB_TESTS_EDU_REGS_H

#define EDU_VENDOR     0x1234
#define EDU_DEVICE     0x11e8
#define EDU_BAR	       0
#define EDU_IDENT      0x00 /* identification: 0xRRrr00ed */
#define EDU_LIVENESS   0x04 /* reads back the bitwise inverse of what was written */
#define EDU_IRQ_STATUS 0x24
#define EDU_IRQ_RAISE  0x60
#define EDU_IRQ_ACK    0x64
#define EDU_DMA_SRC    0x80
#define EDU_DMA_DST    0x88
#define EDU_DMA_COUNT  0x90
#define EDU_DMA_CMD    0x98
#define EDU_DMA_START  0x1u
#define EDU_DMA_TO_RAM 0x2u
#define EDU_DMA_IRQ    0x4u
#define EDU_DMA_DONE   0x100u	/* the interrupt status value a finished DMA raises */
#define EDU_BUF	       0x40000u /* the device's DMA buffer, in its own address space */

#endif
