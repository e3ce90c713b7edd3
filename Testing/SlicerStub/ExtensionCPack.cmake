message(STATUS "CPack of ${PROJECT_NAME} (stub)")
