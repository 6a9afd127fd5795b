# The SDK as a CMake package, the counterpart of arqonbus-sdk.pc: a plugin's own project says
# find_package(ArqonbusSDK 1.1) and gets the target ArqonbusSDK::sdk, the installed plugin
# directory and arqonbus_add_plugin() (cmake/ArqonbusSDKConfig.cmake.in). The package version
# is the plugin ABI, so that a request for 1.1 is refused by an SDK of 1.0 or 2.x. Like the .pc
# file, the installed config names its directories relative to where it is installed.
include(CMakePackageConfigHelpers)
set(ARQ_CMAKE_DEST "${CMAKE_INSTALL_LIBDIR}/cmake/ArqonbusSDK")
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/ArqonbusSDKConfig.cmake.in
  ${CMAKE_BINARY_DIR}/ArqonbusSDKConfig.cmake
  INSTALL_DESTINATION ${ARQ_CMAKE_DEST}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR ARQ_PLUGIN_DEST)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/ArqonbusSDKConfigVersion.cmake
  VERSION ${ARQ_ABI} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/ArqonbusSDKConfig.cmake
              ${CMAKE_BINARY_DIR}/ArqonbusSDKConfigVersion.cmake
        DESTINATION ${ARQ_CMAKE_DEST})
