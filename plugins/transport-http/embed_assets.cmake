# Writes OUTPUT, a C file with the dashboard's files as byte arrays and a table of them
# (struct http_asset, http_assets.h). Run at build time by the transport-http target:
#   cmake -DOUTPUT=<file.c> -DDIR=<dir> -DFILES=<name>=<content type>,... -P embed_assets.cmake
# Plain CMake, so that no xxd or other tool is needed on the build machine.
set(out "/* Generated from plugins/transport-http/dashboard by embed_assets.cmake: do not edit. */\n")
string(APPEND out "#include \"http_assets.h\"\n\n")
set(table "")
set(i 0)
# Sixteen bytes a line (CMake's regular expressions have no {n}).
string(REPEAT "0x[0-9a-f][0-9a-f]," 16 row)
string(REPLACE "," ";" FILES "${FILES}")
foreach(entry IN LISTS FILES)
  string(FIND "${entry}" "=" eq)
  string(SUBSTRING "${entry}" 0 ${eq} name)
  math(EXPR start "${eq} + 1")
  string(SUBSTRING "${entry}" ${start} -1 type)
  if(type MATCHES "^text/")
    string(APPEND type "; charset=utf-8")
  endif()
  file(READ "${DIR}/${name}" hex HEX)
  string(LENGTH "${hex}" hexlen)
  math(EXPR len "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REGEX REPLACE "${row}" "\\0\n    " bytes "${bytes}")
  string(APPEND out "static const unsigned char asset_${i}[] = {\n    ${bytes}0x00};\n\n")
  string(APPEND table "    {\"${name}\", \"${type}\", asset_${i}, ${len}},\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND out "const struct http_asset http_assets[] = {\n${table}    {0, 0, 0, 0},\n};\n")
file(WRITE "${OUTPUT}.tmp" "${out}")
# configure_file rewrites OUTPUT only when it changed: no needless rebuild.
configure_file("${OUTPUT}.tmp" "${OUTPUT}" COPYONLY)
file(REMOVE "${OUTPUT}.tmp")
