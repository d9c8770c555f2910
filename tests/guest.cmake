# Guest end-to-end tests (tests/guest/): programs that run inside the QEMU test guest. Every
# file in build/bin goes into the guest at /opt/vfio-broker/bin; tests/guest/run.sh boots it.

# guest_vfio_available BDF...: proves the VFIO container interface works for those devices.
add_executable(guest_vfio_available ${CMAKE_CURRENT_SOURCE_DIR}/guest/guest_vfio_available.c)

