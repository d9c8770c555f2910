/*
 * hex: hexadecimal digits, the one definition every parser uses.
 */
#ifndef VB_BASE_HEX_H
#define VB_BASE_HEX_H

/* The value of hex digit `c` (either case), or -1 when it is not one. */
static inline int vb_hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The same for lower-case digits only (the form sysfs and every canonical name here use). */
static inline int vb_hex_digit_lower(char c)
{
	return c >= 'A' && c <= 'F' ? -1 : vb_hex_digit(c);
}

#endif
