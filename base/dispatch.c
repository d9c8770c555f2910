/*
 * dispatch: request table lookup (dispatch.h). Trusts the tables (they are the program's); the
 * type and state it is given come from peers and are only compared.
 */
#include "dispatch.h"

const struct vb_req *vb_req_lookup(const void *table, size_t n, size_t stride, uint16_t type,
				   unsigned state, enum vb_req_check *check)
{
	const char *p = table;

	for (size_t i = 0; i < n; i++, p += stride) {
		const struct vb_req *r = (const struct vb_req *)p;

		if (r->type != type)
			continue;
		*check = r->when & state ? VB_REQ_ALLOWED : VB_REQ_NOT_NOW;
		return r;
	}
	*check = VB_REQ_UNKNOWN;
	return NULL;
}
