# Writes a C++ file holding one dialect's migrations (name, SQL) in order, as the
# function FUNC (migrations for SQLite, postgresMigrations for PostgreSQL).
# Invoked as: cmake -DOUT=file.cc -DFUNC=migrations -DFILES="a.sql|b.sql" -P embed_migrations.cmake
# ('|' rather than ';' between files, which a custom command would split on).
string(REPLACE "|" ";" FILES "${FILES}")
if(NOT FUNC)
  set(FUNC migrations)
endif()
set(body "// Generated from src/store/migrations/; do not edit.\n#include \"store/migrations.h\"\nnamespace corral::store {\nconst std::vector<Migration>& ${FUNC}() {\n  static const std::vector<Migration> all = {\n")
foreach(f ${FILES})
  get_filename_component(name ${f} NAME_WE)
  file(READ ${f} sql)
  string(REGEX MATCH "^[0-9]+" number ${name})
  math(EXPR number "${number} + 0")
  string(APPEND body "    {${number}, \"${name}\", R\"corral_sql(${sql})corral_sql\"},\n")
endforeach()
string(APPEND body "  };\n  return all;\n}\n}  // namespace corral::store\n")
file(WRITE ${OUT} "${body}")
