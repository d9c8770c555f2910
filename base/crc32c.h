/*
 * crc32c: CRC-32C (Castagnoli, the polynomial of iSCSI, ext4 and btrfs metadata), for the
 * integrity checks of data this project writes and reads back (the broker's state record).
 */
#ifndef VB_BASE_CRC32C_H
#define VB_BASE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC: start with crc 0; vb_crc32c(0, "123456789", 9) == 0xe3069283. */
uint32_t vb_crc32c(uint32_t crc, const void *buf, size_t len);
/* The portable table implementation vb_crc32c() falls back to (tests compare the two). */
uint32_t vb_crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif
