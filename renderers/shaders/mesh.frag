#version 330
// Ambient + key light + headlight; Lambert diffuse + Blinn-Phong specular; two-sided (Pix3D
// meshes often have inconsistent winding, so the normal is turned towards the viewer).
uniform vec3 u_eye;
uniform vec3 u_key_dir;      // world-space direction towards the key light
uniform float u_ambient;
uniform float u_key;
uniform float u_head;
uniform float u_specular;
uniform float u_shininess;
#ifdef TEXTURED
uniform sampler2D u_tex;
#endif
in vec3 v_pos;
in vec3 v_norm;
in vec4 v_color;
in vec2 v_uv;
in float v_depth;
out vec4 f_color;
void main() {
    vec3 v = normalize(u_eye - v_pos);
    vec3 n = length(v_norm) > 1e-12 ? normalize(v_norm) : v;
    if (dot(n, v) < 0.0) n = -n;
    vec3 l = normalize(u_key_dir);
#ifdef TEXTURED
    vec4 base = v_color * texture(u_tex, v_uv);
#else
    vec4 base = v_color;  // untextured variant: no sampler fetch per sample (llvmpipe shades per sample)
#endif
    float diffuse = u_ambient + u_key * max(dot(n, l), 0.0) + u_head * max(dot(n, v), 0.0);
    float spec = u_specular * (u_key * pow(max(dot(n, normalize(l + v)), 0.0), u_shininess)
                               + u_head * pow(max(dot(n, v), 0.0), u_shininess));
    f_color = vec4(clamp(base.rgb * diffuse + spec, 0.0, 1.0), 1.0);
}
