/*
 * standalone: the backend of a worker serving a device image (no broker): DMA and IRQ requests
 * validated and accounted locally, reset restores the image's config space.
 */
#ifndef VB_WKR_STANDALONE_H
#define VB_WKR_STANDALONE_H

#include "backend.h"
#include "devimg.h"

struct wkr_local;

extern const struct wkr_backend_ops wkr_local_ops;

/* `img` and `memfd` (the image's device memfd) are borrowed. */
int wkr_local_new(const struct wkr_image *img, int memfd, uint32_t max_maps, uint64_t max_bytes,
		  struct wkr_local **ret);
void wkr_local_free(struct wkr_local *l);

#endif
