# Host tests of the broker's VFIO core (broker/core.cmake), run against a fake VFIO kernel
# (fake_vfio.c) and fake sysfs trees (sysfs_tree.c). The real kernel paths are covered in the
# guest by vfio-broker-selftest (broker/selftest.c).
add_library(vb_fake_vfio STATIC ${CMAKE_CURRENT_SOURCE_DIR}/fake_vfio.c
	${CMAKE_CURRENT_SOURCE_DIR}/sysfs_tree.c)
target_include_directories(vb_fake_vfio PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(vb_fake_vfio PUBLIC vb_broker_core)

foreach(t dma dma_model)
	vb_unit_test(${t} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_${t}.c
		${CMAKE_CURRENT_SOURCE_DIR}/dma_env.c LIBS vb_fake_vfio)
endforeach()
vb_unit_test(irq SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_irq.c LIBS vb_fake_vfio)
vb_unit_test(vfio SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_vfio.c LIBS vb_fake_vfio)
foreach(t record record_kill)
	vb_unit_test(${t} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_${t}.c
		${CMAKE_CURRENT_SOURCE_DIR}/record_env.c LIBS vb_broker_core)
endforeach()
vb_unit_test(bind SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_bind.c LIBS vb_fake_vfio)
