foreach(var EXTENSION_HOMEPAGE EXTENSION_CATEGORY EXTENSION_CONTRIBUTORS EXTENSION_DESCRIPTION
            EXTENSION_ICONURL EXTENSION_SCREENSHOTURLS EXTENSION_DEPENDS)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "extension metadata ${var} is not set")
  endif()
endforeach()
get_property(modules GLOBAL PROPERTY STUB_MODULES)
get_property(unittests GLOBAL PROPERTY STUB_UNITTESTS)
message(STATUS "extension ${PROJECT_NAME}: modules ${modules}; python unittests ${unittests}")
