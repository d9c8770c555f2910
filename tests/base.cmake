# base/ tests: PCI addresses, hex, little-endian, the error record, the cleanup helpers.
vb_unit_test(base SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_base.c LIBS vb_base)
