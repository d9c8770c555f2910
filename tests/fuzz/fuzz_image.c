/*
 * fuzz_image: feeds arbitrary text to the device-image parser. When it parses, the image is
 * built into a memfd and opened as a device, so the whole config-space initialization (the
 * capability walks, BAR derivation, MSI/MSI-X layout checks) runs on attacker-chosen config
 * space and region tables; then every config dword is read. Any crash, sanitizer report, leak
 * or fd left open is a finding.
 */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "devimg.h"
#include "fuzz_fail.h"
#include "wkr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int no_irqs(void *data, const struct wkr_irq_set *s)
{
	(void)data;
	(void)s;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wkr_image *img;
	struct vb_err err;
	int fd;

	if (wkr_image_parse((const char *)data, size, &img, &err) < 0) {
		/* Every refusal names a line. */
		if (err.msg[0] != 'l')
			fuzz_fail("an image refusal that names no line: \"%s\"", err.msg);
		return 0;
	}
	if (wkr_image_build(img, &fd) == 0) {
		struct wkr_io io;
		struct wkr_callbacks cb = {no_irqs, NULL, NULL};
		struct wkr_dev *d;

		wkr_io_from_fd(&io, fd);
		if (wkr_dev_new(wkr_image_info(img), &io, &cb, &d) == 0) {
			uint32_t size_cfg = (uint32_t)wkr_image_info(img)->regions[7].size;
			uint8_t b[4];

			for (uint32_t off = 0; off < size_cfg; off += 4)
				if (wkr_cfg_read(d, off, b, 4) < 0)
					fuzz_fail("reading config space at 0x%x of 0x%x failed",
						  off, size_cfg);
			wkr_dev_free(d);
		}
		close(fd);
	}
	wkr_image_free(img);
	return 0;
}
