/*
 * devimg: the device-image format (worker/DEVICE-IMAGE.md): a text description of a VFIO PCI
 * device (regions, IRQs, config space, initial BAR contents), and a builder that lays it out in
 * a memfd exactly like a vfio-pci device fd (region i at WKR_REGION_OFFSET(i)).
 *
 * The standalone worker serves such an image; the tests use images of real devices captured
 * from a guest. The parser treats its input as untrusted: every error names its line.
 */
#ifndef VB_WKR_DEVIMG_H
#define VB_WKR_DEVIMG_H

#include <stddef.h>

#include "err.h"
#include "wkr.h"

/* Largest image text accepted, and most data bytes all `data` lines may carry together. */
#define WKR_IMAGE_TEXT_MAX (16u << 20)
#define WKR_IMAGE_DATA_MAX (16u << 20)

struct wkr_image;

/* Parses `len` bytes of image text. On failure returns -EINVAL (or -ENOMEM) with "line N:
 * reason" in `err` (base/err.h; N is 1-based, the last line for what is missing); *ret is left
 * alone. */
int wkr_image_parse(const char *text, size_t len, struct wkr_image **ret, struct vb_err *err);
/* Reads and parses a file (at most WKR_IMAGE_TEXT_MAX bytes). I/O errors are negative errno
 * values, explained in `err` where more can be said than strerror(). */
int wkr_image_load(const char *path, struct wkr_image **ret, struct vb_err *err);
void wkr_image_free(struct wkr_image *img);
/* Region offsets are WKR_REGION_OFFSET(index). */
const struct wkr_devinfo *wkr_image_info(const struct wkr_image *img);
/* The initial config space as the image gives it (bytes not given are zero). */
const uint8_t *wkr_image_config(const struct wkr_image *img);

/* Creates a sealed-size memfd (MFD_CLOEXEC) holding config space and data at the regions'
 * offsets. The caller owns *ret_fd. */
int wkr_image_build(const struct wkr_image *img, int *ret_fd);

#endif
